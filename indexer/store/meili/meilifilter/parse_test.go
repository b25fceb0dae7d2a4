package meilifilter

import (
	"reflect"
	"strings"
	"testing"
)

// Expected trees are written in the String form (every value quoted, every composite term parenthesised).
func TestParse(t *testing.T) {
	tests := []struct{ in, want string }{
		{"channel = Ponce", `"channel" = "Ponce"`},
		{"subscribers = 12", `"subscribers" = "12"`},
		{"channel = 'Mister Mv'", `"channel" = "Mister Mv"`},
		{`channel = "Mister Mv"`, `"channel" = "Mister Mv"`},
		{"'dog race' = Borzoi", `"dog race" = "Borzoi"`},
		{`"dog race" = 'Bernese Mountain'`, `"dog race" = "Bernese Mountain"`},
		{"a=1", `"a" = "1"`},
		{"a>=1", `"a" >= "1"`},
		{"a!=b", `"a" != "b"`},
		{"a <= -1.5", `"a" <= "-1.5"`},
		{"attr.http.route = /x", ""}, // '/' is not a word character
		{"attr.http.route = '/x'", `"attr.http.route" = "/x"`},
		{"colour IN[]", `"colour" IN []`},
		{"colour IN[green,]", `"colour" IN ["green"]`},
		{" colour IN [  green , blue , ]", `"colour" IN ["green", "blue"]`},
		{"colour NOT IN[green,blue]", `NOT ("colour" IN ["green", "blue"])`},
		{"subscribers 100 TO 1000", `"subscribers" "100" TO "1000"`},
		{"NOT subscribers 100 TO 1000", `NOT ("subscribers" "100" TO "1000")`},
		{"subscribers EXISTS", `"subscribers" EXISTS`},
		{"subscribers NOT   EXISTS", `NOT ("subscribers" EXISTS)`},
		{"NOT subscribers NOT EXISTS", `"subscribers" EXISTS`},
		{"subscribers IS NULL", `"subscribers" IS NULL`},
		{"subscribers  IS   NOT   NULL", `NOT ("subscribers" IS NULL)`},
		{"subscribers IS EMPTY", `"subscribers" IS EMPTY`},
		{"subscribers IS NOT EMPTY", `NOT ("subscribers" IS EMPTY)`},
		{"NOT NOT NOT NOT x = 5", `"x" = "5"`},
		{"NOT NOT (NOT NOT x = 5)", `"x" = "5"`},
		{"channel = ponce AND 'dog race' != 'bernese mountain' OR subscribers > 1000",
			`(("channel" = "ponce") AND ("dog race" != "bernese mountain")) OR ("subscribers" > "1000")`},
		{"a = 1 OR b = 2 AND c = 3", `("a" = "1") OR (("b" = "2") AND ("c" = "3"))`},
		{"(a = 1 OR b = 2) AND c = 3", `(("a" = "1") OR ("b" = "2")) AND ("c" = "3")`},
		{"NOT (a = 1 OR b = 2)", `NOT (("a" = "1") OR ("b" = "2"))`},
		{"  ( a = 1 )  ", `"a" = "1"`},
		{"ANDROID = 1", `"ANDROID" = "1"`}, // a word that starts like a keyword is a value
		{"a = 1 AND NOTE = x", `("a" = "1") AND ("NOTE" = "x")`},
		{"city = Zürich", `"city" = "Zürich"`},
		{"", ""},
		{"   ", ""},
		// escapes (Meilisearch's own test vectors)
		{`title = 'foo\\'`, `"title" = "foo\\"`},
		{`title = 'foo\\\\'`, `"title" = "foo\\\\"`},
		{`t = "Hello \"world\""`, `"t" = "Hello \"world\""`},
		{`t = "Hello \\\"world\\\""`, `"t" = "Hello \\\"world\\\""`},
		{`t = 'I\'m "super" tamo'`, `"t" = "I'm \"super\" tamo"`},
		{`t = '\'\''`, `"t" = "''"`},
		{`t = "\x20\u00e9\u{1F600}"`, "\"t\" = \" é\U0001F600\""},
		{"t = \"line\\nnext\\ttab\"", "\"t\" = \"line\nnext\ttab\""},
	}
	for _, tt := range tests {
		n, err := Parse(tt.in)
		if tt.want == "" && tt.in != "" && strings.TrimSpace(tt.in) != "" {
			if err == nil {
				t.Errorf("Parse(%q) = %s, want an error", tt.in, n)
			}
			continue
		}
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.in, err)
			continue
		}
		got := ""
		if n != nil {
			got = n.String()
		}
		if got != tt.want {
			t.Errorf("Parse(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		in   string
		msg  string
		pos  int
		desc string
	}{
		{"channel", "expected an operation", 7, "field alone"},
		{"channel =", "expected a value", 9, "missing value"},
		{"channel = AND", "reserved keyword AND", 10, "keyword as value"},
		{"a = 1 AND", "expected a value", 9, "dangling AND"},
		{"a = 1 OR", "expected a value", 8, "dangling OR"},
		{"NOT", "expected a value", 3, "dangling NOT"},
		{"(a = 1", "expected `)`", 6, "unclosed parenthesis"},
		{"a = 1)", "unexpected \")\"", 5, "stray parenthesis"},
		{"a = 'x", "missing closing '", 4, "unclosed quote"},
		{`a = "x\`, "unfinished escape", 6, "escape at end"},
		{`a = "\q"`, `invalid escape sequence \q`, 4, "unknown escape"},
		{`a = "\u12"`, `invalid escape \u`, 4, "short unicode escape"},
		{"a IN [1, 2", "expected `,` or `]`", 10, "unclosed list"},
		{"a IN 1", "expected `[`", 5, "list without bracket"},
		{"a 1 2", "expected TO", 4, "range without TO"},
		{"a IS 1", "expected NULL or EMPTY", 5, "bad IS"},
		{"a NOT 1", "expected IN or EXISTS", 6, "bad NOT"},
		{"a = 1 b = 2", "expected AND, OR", 6, "missing connective"},
		{"a CONTAINS x", "experimental", 2, "contains"},
		{"_geoRadius(1, 2, 3)", "geo filter", 0, "geo"},
		{"a = 1 AND " + strings.Repeat("(", 300) + "a = 1" + strings.Repeat(")", 300), "nested too deeply", -1, "depth"},
	}
	for _, tt := range tests {
		_, err := Parse(tt.in)
		e, ok := err.(*Error)
		if !ok {
			t.Errorf("%s: Parse(%q) error = %v, want *Error", tt.desc, tt.in, err)
			continue
		}
		if !strings.Contains(e.Msg, tt.msg) || (tt.pos >= 0 && e.Pos != tt.pos) {
			t.Errorf("%s: Parse(%q) = %q at %d, want %q at %d", tt.desc, tt.in, e.Msg, e.Pos, tt.msg, tt.pos)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"a = 1", "a IN [x, 'y', \"z\"]", "NOT (a = 1 OR b != 2) AND c 1 TO 2", "a EXISTS AND b IS NOT NULL",
		`t = "Hello \"world\""`, "a NOT IN []", "x IS EMPTY OR y NOT EXISTS", `a = '\u{1F600}\x41'`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := Parse(s)
		if err != nil || n == nil {
			return
		}
		// Evaluation never fails on a parsed filter, whatever its operands.
		doc := Flatten(map[string]any{"a": 1.5, "b": "x", "c": []any{"y", 2.0, true, nil}, "d": map[string]any{"e": ""}})
		Match(n, doc)
		_ = Check(n, []string{"a", "d"})
		again, err := Parse(n.String())
		if err != nil {
			t.Fatalf("Parse(%q) = %s, which does not parse: %v", s, n, err)
		}
		if !reflect.DeepEqual(n, again) {
			t.Fatalf("Parse(%q) = %s, re-parsed as %s", s, n, again)
		}
	})
}

func FuzzQuote(f *testing.F) {
	for _, s := range []string{"", `\`, `"`, `\"`, `x\`, `x\\"y`, `"\"`, "plain", "a'b\"c\\d", "NOT", "IN", "a b", "é\n\t", `\n`, `\u0041`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := Parse("f = " + Quote(s))
		if err != nil {
			t.Fatalf("Parse(f = %s): %v", Quote(s), err)
		}
		if got := n.(*Cond).Value; got != s {
			t.Fatalf("Quote(%q) parsed back as %q", s, got)
		}
	})
}
