package query

import (
	"errors"
	"strings"
	"testing"

	"github.com/meshtrace/meshtrace/filter/policy"
)

// filterHash returns what the filter records for value v of a tag with "hash": true under key: the
// policy's own transform, the key read from the environment variable as the plugin reads it.
func filterHash(t *testing.T, key, v string) string {
	t.Helper()
	p, err := policy.ParseEnv([]byte(`{"hmac_key_env": "K", "tags": [{"attribute": "customer_id", "from": [{"header": "x"}], "hash": true}]}`),
		func(string) (string, bool) { return key, true })
	if err != nil {
		t.Fatal(err)
	}
	h, ok := p.Tags[0].Transform(v)
	if !ok {
		t.Fatal("transform refused the value")
	}
	return h
}

func TestCompileHash(t *testing.T) {
	const key = "from-the-secret"
	h := func(v string) string { return filterHash(t, key, v) }
	// The filter's own test value: echo -n 42 | openssl dgst -sha256 -hmac key
	if got := filterHash(t, "key", "42"); got != "f2991b7ce981d0b5adc5e6a0f31acaeb407bfc21354bbcc31a0c43eaffa83d65" {
		t.Fatalf("filter hash of 42 = %s", got)
	}
	tests := []struct{ src, span, trace string }{
		{src: `customer_id = hash("1234567")`, span: "attr.customer_id = " + h("1234567")},
		{src: `customer_id=hash(1234567)`, span: "attr.customer_id = " + h("1234567")},
		{src: `attr.user.email_hash=HASH("alice@example.com")`, span: "attr.user.email_hash = " + h("alice@example.com")},
		{src: `customer_id != hash("7")`, span: "NOT attr.customer_id = " + h("7")},
		{src: `customer_id IN [hash("1"), 2, hash("a b")]`, span: "attr.customer_id IN [" + h("1") + ", 2, " + h("a b") + "]"},
		{src: `trace.customer_id = hash("9") service=shop`, span: "service = shop", trace: "keys.customer_id = " + h("9")},
		{src: `customer_id = hash("")`, span: "attr.customer_id = " + h("")},
		// Case is the value's: the filter hashes the value as its transforms leave it (lowercase, regex).
		{src: `u = hash("Alice")`, span: "attr.u = " + h("Alice")},
	}
	for _, tt := range tests {
		q, err := Compile(tt.src, now, WithHMACKey([]byte(key)))
		if err != nil {
			t.Errorf("Compile(%q): %v", tt.src, err)
			continue
		}
		if got := str(q.Span); got != tt.span {
			t.Errorf("Compile(%q).Span = %q, want %q", tt.src, got, tt.span)
		}
		if got := str(q.Trace); got != tt.trace {
			t.Errorf("Compile(%q).Trace = %q, want %q", tt.src, got, tt.trace)
		}
	}
	// The compiled value is plain text: stores see the hex digest, not a hash(...) literal.
	q, err := Compile(`customer_id = hash("1")`, now, WithHMACKey([]byte(key)))
	if err != nil {
		t.Fatal(err)
	}
	if v := q.Span.(*Compare).Value; v != (Value{Str: h("1")}) {
		t.Fatalf("compiled value = %+v", v)
	}
	if h("Alice") == h("alice") || len(h("1")) != 64 || strings.ToLower(h("1")) != h("1") {
		t.Fatalf("hash: %s %s %s", h("Alice"), h("alice"), h("1"))
	}
}

func TestCompileHashErrors(t *testing.T) {
	key := WithHMACKey([]byte("k"))
	tests := []struct {
		src  string
		opts []Option
		pos  int
		want string
	}{
		{`customer_id = hash("123")`, nil, 15, "hash(...) needs the indexer's --hmac-key-file"},
		{`customer_id = hash("123")`, []Option{WithHMACKey(nil)}, 15, "hash(...) needs the indexer's --hmac-key-file"},
		{`a=1 customer_id IN [1, hash("2")]`, []Option{WithHMACKey([]byte{})}, 24, "hash(...) needs the indexer's --hmac-key-file"},
		{`NOT (customer_id != hash("x"))`, nil, 21, "hash(...) needs the indexer's --hmac-key-file"},
		{`customer_id > hash("1")`, []Option{key}, 15, `hash(...) is compared with =, != or IN, found ">"`},
		{`duration = hash("1")`, []Option{key}, 12, "duration is not text"},
		{`error = hash("true")`, []Option{key}, 9, "error is not text"},
		{`since = hash("1h")`, []Option{key}, 9, "hash(...) is a value to compare a hashed tag with (=, != or IN), not a since setting"},
		{`sort=hash("duration")`, []Option{key}, 6, "not a sort setting"},
	}
	for _, tt := range tests {
		_, err := Compile(tt.src, now, tt.opts...)
		var qe *Error
		if !errors.As(err, &qe) {
			t.Errorf("Compile(%q) error = %v, want *Error", tt.src, err)
			continue
		}
		if qe.Pos != tt.pos || !strings.Contains(qe.Msg, tt.want) {
			t.Errorf("Compile(%q) = %v; want position %d and %q", tt.src, err, tt.pos, tt.want)
		}
	}
}
