package query

import (
	"testing"
	"unicode/utf8"
)

// FuzzParse checks that no input crashes the parser or the compiler, that errors carry a position inside
// the query, and that every tree renders to text that parses back to the same tree.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`customer_id=123 service=inventory-service duration>500ms since=1h error=true "connection reset"`,
		"trace.customer_id=123 trace.services=inventory-service trace.duration>500ms since=1h",
		"(a=1 OR b!=2) NOT c IN [x, 'y z'] d EXISTS e NOT EXISTS between=2h..1h sort=-duration",
		`customer_id=hash("123") trace.customer_id IN [hash(7), hash('a b')] user!=HASH("x")`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		e, err := Parse(src)
		if err != nil {
			qe, ok := err.(*Error)
			if !ok || qe.Pos < 1 || qe.Pos > len(src)+1 {
				t.Fatalf("Parse(%q) error %v: want *Error with a position in 1..%d", src, err, len(src)+1)
			}
			return
		}
		for _, opts := range [][]Option{nil, {WithHMACKey([]byte("key"))}} {
			if _, err := CompileExpr(e, now, opts...); err != nil {
				if qe, ok := err.(*Error); !ok || qe.Pos < 0 || qe.Pos > len(src)+1 {
					t.Fatalf("Compile(%q) error %v: want *Error with a position", src, err)
				}
			}
		}
		if e == nil {
			return
		}
		text := e.String()
		if !utf8.ValidString(text) {
			t.Fatalf("rendering of %q is not UTF-8: %q", src, text)
		}
		e2, err := Parse(text)
		if err != nil {
			t.Fatalf("rendering %q of %q does not parse: %v", text, src, err)
		}
		if got := e2.String(); got != text {
			t.Fatalf("round trip of %q: %q != %q", src, got, text)
		}
	})
}
