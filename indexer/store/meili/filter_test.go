package meili

import (
	"strings"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/indexer/query"
	"github.com/meshtrace/meshtrace/indexer/store/meili/meilifilter"
)

func str(s string) query.Value { return query.Value{Str: s} }
func num(s string, n float64) query.Value {
	return query.Value{Str: s, Num: n, IsNum: true}
}

func TestCompileFilter(t *testing.T) {
	tests := []struct {
		name string
		in   query.Expr
		want string
	}{
		{"nil", nil, ``},
		{"equality", &query.Compare{Field: "service", Op: query.Eq, Value: str("inventory-service")},
			`"service" = "inventory-service"`},
		{"inequality", &query.Compare{Field: "attr.customer_id", Op: query.Ne, Value: str("123")},
			`"attr.customer_id" != "123"`},
		{"ordering uses the number", &query.Compare{Field: "duration", Op: query.Gt, Value: num("500000", 500000)},
			`"duration" > "500000"`},
		{"no exponent for big numbers", &query.Compare{Field: "start", Op: query.Ge, Value: num("1.7e15", 1.7e15)},
			`"start" >= "1700000000000000"`},
		{"ranges on attributes leave strings out", &query.Compare{Field: "attr.http.response.status_code", Op: query.Ge, Value: num("500", 500)},
			`("attr.http.response.status_code" >= "500" AND NOT "attr.http.response.status_code" >= "")`},
		{"keyword values stay values", &query.Compare{Field: "name", Op: query.Eq, Value: str("NOT")},
			`"name" = "NOT"`},
		{"quotes and backslashes", &query.Compare{Field: `attr.we"ird\key`, Op: query.Eq, Value: str(`say "hi" \o/`)},
			`"attr.we\"ird\\key" = "say \"hi\" \\o/"`},
		{"in", &query.In{Field: "kind", Values: []query.Value{str("producer"), str("consumer")}},
			`"kind" IN ["producer", "consumer"]`},
		{"empty in", &query.In{Field: "kind"}, `"kind" IN []`},
		{"exists", &query.Exists{Field: "attr.http.route"}, `"attr.http.route" EXISTS`},
		{"not", &query.Not{X: &query.Exists{Field: "attr.customer_id"}}, `NOT ("attr.customer_id" EXISTS)`},
		{"and of or", &query.And{Terms: []query.Expr{
			&query.Or{Terms: []query.Expr{
				&query.Compare{Field: "service", Op: query.Eq, Value: str("a")},
				&query.Compare{Field: "service", Op: query.Eq, Value: str("b")},
			}},
			&query.Compare{Field: "error", Op: query.Eq, Value: str("true")},
		}}, `(("service" = "a") OR ("service" = "b")) AND ("error" = "true")`},
	}
	for _, tt := range tests {
		got, err := compileFilter(tt.in)
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if got != tt.want {
			t.Errorf("%s:\n got %s\nwant %s", tt.name, got, tt.want)
		}
		if got == "" {
			continue
		}
		if _, err := meilifilter.Parse(got); err != nil {
			t.Errorf("%s: compiled filter %s does not parse: %v", tt.name, got, err)
		}
	}
}

func TestCompileFilterErrors(t *testing.T) {
	for _, e := range []query.Expr{
		&query.Compare{Field: "duration", Op: query.Lt, Value: str("slow")},
		&query.Text{Phrase: "connection reset"},
		&query.And{},
	} {
		if got, err := compileFilter(e); err == nil {
			t.Errorf("compileFilter(%s) = %s, want an error", e, got)
		}
	}
}

// TestCompiledQueries compiles real queries and checks that each filter parses and names the fields the
// query resolved.
func TestCompiledQueries(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	for _, src := range []string{
		`customer_id=123 service=inventory-service trace.duration>500ms since=1h`,
		`NOT (customer_id=123 OR customer_id=456) kind IN [producer, "CONSUMER"]`,
		`attr.messaging.system EXISTS attr.http.route="/stock/{sku}" duration>=1.5s`,
		`name="say \"hi\"" status!=error`,
	} {
		q, err := query.Compile(src, now)
		if err != nil {
			t.Fatalf("Compile(%q): %v", src, err)
		}
		for _, e := range []query.Expr{q.Span, q.Trace} {
			f, err := compileFilter(e)
			if err != nil {
				t.Errorf("%q: %v", src, err)
				continue
			}
			if e == nil {
				continue
			}
			if _, err := meilifilter.Parse(f); err != nil {
				t.Errorf("%q compiles to %s, which does not parse: %v", src, f, err)
			}
		}
	}
}

func TestSearchQuery(t *testing.T) {
	tests := []struct {
		in   []string
		want string
	}{
		{nil, ""},
		{[]string{"connection reset", "timeout"}, `"connection reset" "timeout"`},
		{[]string{`say "hi"`, `"`, " "}, `"say  hi"`},
	}
	for _, tt := range tests {
		if got := searchQuery(tt.in); got != tt.want {
			t.Errorf("searchQuery(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

// FuzzCompileFilter checks that any field name and value survive compilation: the filter parses back to the
// same field, operator and value.
func FuzzCompileFilter(f *testing.F) {
	f.Add("service", "inventory-service", false)
	f.Add(`attr.a"b\c`, `x\"y\\`, true)
	f.Add("NOT", "AND", false)
	f.Fuzz(func(t *testing.T, field, value string, in bool) {
		if strings.TrimSpace(field) == "" {
			return // query fields are never blank
		}
		var e query.Expr = &query.Compare{Field: field, Op: query.Ne, Value: str(value)}
		if in {
			e = &query.In{Field: field, Values: []query.Value{str(value), str(value + "2")}}
		}
		s, err := compileFilter(e)
		if err != nil {
			t.Fatal(err)
		}
		n, err := meilifilter.Parse(s)
		if err != nil {
			t.Fatalf("compileFilter(%s) = %s, which does not parse: %v", e, s, err)
		}
		switch n := n.(type) {
		case *meilifilter.Cond:
			if n.Field != field || n.Op != meilifilter.Ne || n.Value != value {
				t.Fatalf("%s parsed as %+v", s, n)
			}
		case *meilifilter.In:
			if n.Field != field || len(n.Values) != 2 || n.Values[0] != value || n.Values[1] != value+"2" {
				t.Fatalf("%s parsed as %+v", s, n)
			}
		default:
			t.Fatalf("%s parsed as %T", s, n)
		}
	})
}
