package otlpjson

import (
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"
)

// nested wraps a span's unknown field in n levels of arrays: 7 levels of OTLP structure hold it.
func nested(n int) string {
	return `{"resourceSpans":[{"scopeSpans":[{"spans":[{"x":` + strings.Repeat("[", n-7) + strings.Repeat("]", n-7) + `}]}]}]}`
}

func TestDecodeLimits(t *testing.T) {
	tests := []struct {
		name      string
		d         Decoder
		ok, over  string
		want      string
		wantLarge bool
	}{
		{"nesting", Decoder{}, nested(MaxNesting), nested(MaxNesting + 1), "JSON nested deeper than 64 levels (at byte 105)", false},
		// 10 tokens: {"resourceSpans":[ 3, the elements 3 "{" and 2 ",", then "," and ":"; strings hold none.
		{"tokens", Decoder{MaxTokens: 10}, `{"resourceSpans":[{},{},{}],"s":"[{,:}]\"["}`,
			`{"resourceSpans":[{},{},{"a":1}],"s":"[{,:}]\"["}`, "more than 10 JSON tokens (at byte 36): send smaller requests", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := tt.d.Decode([]byte(tt.ok)); err != nil {
				t.Fatalf("at the limit: %v", err)
			}
			_, err := tt.d.Decode([]byte(tt.over))
			var de *Error
			if !errors.As(err, &de) || err.Error() != tt.want || de.TooLarge != tt.wantLarge {
				t.Fatalf("over the limit: %v (TooLarge %v), want %q", err, de != nil && de.TooLarge, tt.want)
			}
		})
	}
	if _, err := (&Decoder{MaxTokens: -1}).Decode([]byte(`{"resourceSpans":[` + strings.Repeat("{},", 1000) + `{}]}`)); err != nil {
		t.Fatalf("no token limit: %v", err)
	}
}

func TestParseErrorIsShort(t *testing.T) {
	in := nested(MaxNesting)
	mid := strings.Index(in, "]") // a syntax error at the deepest level, which the parser reports level by level
	var d Decoder
	_, err := d.Decode([]byte(in[:mid] + "!" + in[mid:]))
	if err == nil || len(err.Error()) > maxParseError+64 {
		t.Fatalf("error of %d bytes: %v", len(err.Error()), err)
	}
}

func allocated(f func()) (uint64, time.Duration) {
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	f()
	took := time.Since(start)
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc, took
}

// TestDecodeMemoryBounded: 16 MiB floods of tiny values, which took the decoder to 3.3-4.4 GB allocated (200 to
// 265 times the body), are refused by the scan without allocating; an accepted flood allocates in proportion to
// MaxTokens.
func TestDecodeMemoryBounded(t *testing.T) {
	const size = 16 << 20
	floods := map[string]string{
		"empty spans":      `{"resourceSpans":[{"scopeSpans":[{"spans":[` + strings.Repeat("{},", size/3) + `{}]}]}]}`,
		"unknown zeros":    `{"x":[` + strings.Repeat("0,", size/2) + `0]}`,
		"empty attributes": `{"resourceSpans":[{"scopeSpans":[{"spans":[{"attributes":[` + strings.Repeat("{},", size/3) + `{}]}]}]}]}`,
		"deep":             strings.Repeat("[", size/2) + strings.Repeat("]", size/2),
	}
	for name, in := range floods {
		var d Decoder
		var err error
		n, took := allocated(func() { _, err = d.Decode([]byte(in)) })
		t.Logf("%s: refused %d bytes allocating %d in %v: %v", name, len(in), n, took, err)
		if err == nil || n > 64<<10 || took > time.Second {
			t.Errorf("%s: error %v after allocating %d bytes in %v; want a refusal under 64 KiB and a second", name, err, n, took)
		}
	}
	const tokens = 1 << 16
	d := Decoder{MaxTokens: tokens}
	in := `{"resourceSpans":[{"scopeSpans":[{"spans":[` + strings.Repeat("{},", tokens/2-8) + `{}]}]}]}`
	var err error
	n, _ := allocated(func() { _, err = d.Decode([]byte(in)) })
	t.Logf("accepted %d tokens of empty spans allocating %d bytes: %d per token", tokens, n, n/tokens)
	if err != nil || n/tokens > 1000 {
		t.Errorf("error %v, %d bytes per token; want at most 1000", err, n/tokens)
	}
}

// TestNestingHoldsDeepestValue: the deepest AnyValue the decoder accepts, a key-value list in an event
// attribute, fits in MaxNesting, and the next level is refused by the decoder, naming its path.
func TestNestingHoldsDeepestValue(t *testing.T) {
	event := func(levels int) string {
		v := `{"stringValue":"leaf"}`
		for range levels {
			v = `{"kvlistValue":{"values":[{"key":"k","value":` + v + `}]}}`
		}
		return `{"resourceSpans":[{"scopeSpans":[{"spans":[{"events":[{"attributes":[{"key":"k","value":` + v + `}]}]}]}]}]}`
	}
	var d Decoder
	if _, err := d.Decode([]byte(event(maxDepth - 1))); err != nil {
		t.Fatal(err)
	}
	_, err := d.Decode([]byte(event(maxDepth)))
	if err == nil || !strings.Contains(err.Error(), "nested deeper than 12 levels") {
		t.Fatalf("error %v", err)
	}
}
