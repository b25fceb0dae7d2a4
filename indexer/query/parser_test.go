package query

import (
	"errors"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		src  string
		want string // String() of the tree
	}{
		{"", "<nil>"},
		{"service=inventory-service", "service = inventory-service"},
		{`customer_id=123 service=inventory-service duration>500ms since=1h error=true "connection reset"`,
			`customer_id = 123 AND service = inventory-service AND duration > 500ms AND since = 1h AND error = true AND "connection reset"`},
		{"a=1 OR b=2 c=3", "a = 1 OR b = 2 AND c = 3"},
		{"(a=1 OR b=2) c=3", "(a = 1 OR b = 2) AND c = 3"},
		{"NOT a=1 AND b!=2", "NOT a = 1 AND b != 2"},
		{"not (a<=1 or b>=2)", "NOT (a <= 1 OR b >= 2)"},
		{"kind IN [server, client]", "kind IN [server, client]"},
		{"kind not in [server]", "NOT kind IN [server]"},
		{"attr.http.route EXISTS", "attr.http.route EXISTS"},
		{"attr.x NOT EXISTS", "NOT attr.x EXISTS"},
		{`name="GET /orders" timeout`, `name = "GET /orders" AND "timeout"`},
		{`msg='it''s'`, `msg = "it" AND "s"`},
		{`x="a\"b"`, `x = "a\"b"`},
		{"trace.duration>2s trace.services=inventory-service", "trace.duration > 2s AND trace.services = inventory-service"},
		{"start>=2026-11-22T01:00:00Z", "start >= 2026-11-22T01:00:00Z"},
		{`k="AND"`, `k = "AND"`},
		{"x=-1.5", "x = -1.5"},
		{`customer_id = hash("123")`, `customer_id = hash("123")`},
		{`customer_id=HASH(123) trace.customer_id != hash('a "b"')`, `customer_id = hash("123") AND trace.customer_id != hash("a \"b\"")`},
		{`customer_id IN [hash("1"), 2, hash(3)]`, `customer_id IN [hash("1"), 2, hash("3")]`},
		{`customer_id=hash ("1")`, `customer_id = hash AND "1"`}, // not a call: a space before "("
		{`hash("1")`, `"hash" AND "1"`}, // free text, as before
		{`a="hash" b=hash`, `a = "hash" AND b = hash`},
	}
	for _, tt := range tests {
		e, err := Parse(tt.src)
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.src, err)
			continue
		}
		got := "<nil>"
		if e != nil {
			got = e.String()
		}
		if got != tt.want {
			t.Errorf("Parse(%q) = %s, want %s", tt.src, got, tt.want)
		}
		if e == nil {
			continue
		}
		// The rendering parses back to the same rendering.
		e2, err := Parse(got)
		if err != nil || e2.String() != got {
			t.Errorf("round trip of %q: %v, %v", got, e2, err)
		}
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		src  string
		pos  int
		want string
	}{
		{"service=", 9, `expected a value after "=", found end of query`},
		{"a=1 OR", 7, "expected a condition, free text, NOT or \"(\", found end of query"},
		{"(a=1", 5, `expected ")" to close "(" at position 1`},
		{"a=1)", 4, `found ")" without matching "("`},
		{"a ! b", 3, `expected "!="`},
		{`name="open`, 6, "expected closing \" for the string"},
		{"kind IN server", 9, `expected "[" after IN`},
		{"kind IN [a b]", 12, `expected "," or "]" in the IN list opened at position 9`},
		{"kind IN []", 10, "expected a value in the IN list"},
		{"a=1 AND", 8, "found end of query"},
		{"1a.b?=3", 1, "expected a field name"},
		{"()", 2, `expected a condition or free text inside "()"`},
		{"a=OR", 3, "expected a value"},
		{"= 3", 1, "expected a condition"},
		{strings.Repeat("(", 200) + "a", 33, "nested too deeply: the limit is 32 levels"},
		{"a=hash(", 8, `expected the value to hash inside hash(...), like hash("123"), found end of query`},
		{"a=hash()", 8, `expected the value to hash inside hash(...)`},
		{"a=hash(OR)", 8, `expected the value to hash inside hash(...)`},
		{`a=hash("1"`, 11, `expected ")" to close hash( at position 7, found end of query`},
		{`a IN [hash("1", "2")]`, 15, `expected ")" to close hash( at position 11, found ","`},
	}
	for _, tt := range tests {
		_, err := Parse(tt.src)
		var qe *Error
		if !errors.As(err, &qe) {
			t.Errorf("Parse(%q) error = %v, want *Error", tt.src, err)
			continue
		}
		if qe.Pos != tt.pos || !strings.Contains(qe.Msg, tt.want) {
			t.Errorf("Parse(%q) = %v; want position %d and %q", tt.src, err, tt.pos, tt.want)
		}
	}
}
