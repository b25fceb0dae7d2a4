package meili

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/meshtrace/meshtrace/indexer/document"
	"github.com/meshtrace/meshtrace/indexer/query"
	"github.com/meshtrace/meshtrace/indexer/store"
)

func str(s string) query.Value { return query.Value{Str: s} }
func num(s string, n float64) query.Value {
	return query.Value{Str: s, Num: n, IsNum: true}
}

// filterSpans are the span documents the compiled filters run on in Meilisearch, by name.
var filterSpans = map[string]document.Span{
	"inv": {Service: "inventory-service", Kind: "server", Duration: 600_000, Name: "POST /reserve", StatusCode: "ok",
		Attr: map[string]any{"customer_id": "123", "http.route": "/stock/{sku}", `we"ird\key`: `say "hi" \o/`,
			"http.response.status_code": 503}},
	"chk": {Service: "checkout", Kind: "producer", Duration: 1_500_000, Name: "NOT", StatusCode: "error", Error: true,
		Attr: map[string]any{"customer_id": 456, "messaging.system": "kafka", "http.response.status_code": "500"}},
	"fe": {Service: "frontend", Kind: "consumer", Duration: 2_000_000, Name: `say "hi"`, StatusCode: "unset",
		Attr: map[string]any{"http.route": "/stock/{sku}", "messaging.system": "kafka", "http.response.status_code": 200}},
	"gw": {Service: "istio-ingressgateway", Kind: "client", Duration: 100, Name: "GET /", StatusCode: "unset",
		Start: 1_600_000_000_000_000},
}

// filterTraces are the trace documents the compiled filters run on, by name.
var filterTraces = map[string]document.Trace{
	"t-inv": {Duration: 600_000, SpanCount: 2, Services: []string{"frontend", "inventory-service"},
		Keys: map[string][]string{"customer_id": {"123"}}},
	"t-chk": {Duration: 1_500_000, SpanCount: 1, ErrorCount: 1, Services: []string{"checkout"},
		Keys: map[string][]string{"customer_id": {"456"}}},
	"t-gw": {Duration: 100, SpanCount: 1, Services: []string{"istio-ingressgateway"}},
}

// filterCases are compiled to exact filter strings (TestCompileFilter) and run on filterSpans in Meilisearch
// (TestFiltersInMeilisearch), which must match exactly the named documents.
var filterCases = []struct {
	name  string
	in    query.Expr
	want  string
	match []string
}{
	{"nil", nil, ``, []string{"chk", "fe", "gw", "inv"}},
	{"equality", &query.Compare{Field: "service", Op: query.Eq, Value: str("inventory-service")},
		`"service" = "inventory-service"`, []string{"inv"}},
	{"inequality matches documents without the field", &query.Compare{Field: "attr.customer_id", Op: query.Ne, Value: str("123")},
		`"attr.customer_id" != "123"`, []string{"chk", "fe", "gw"}},
	{"equality matches a number and a string", &query.In{Field: "attr.http.response.status_code",
		Values: []query.Value{num("500", 500), num("503", 503)}},
		`"attr.http.response.status_code" IN ["500", "503"]`, []string{"chk", "inv"}},
	{"ordering uses the number", &query.Compare{Field: "duration", Op: query.Gt, Value: num("500000", 500000)},
		`"duration" > "500000"`, []string{"chk", "fe", "inv"}},
	{"no exponent for big numbers", &query.Compare{Field: "start", Op: query.Ge, Value: num("1.7e15", 1.7e15)},
		`"start" >= "1700000000000000"`, []string{"chk", "fe", "inv"}},
	{"ranges on attributes leave strings out", &query.Compare{Field: "attr.http.response.status_code", Op: query.Ge, Value: num("500", 500)},
		`("attr.http.response.status_code" >= "500" AND NOT "attr.http.response.status_code" >= "")`, []string{"inv"}},
	{"keyword values stay values", &query.Compare{Field: "name", Op: query.Eq, Value: str("NOT")},
		`"name" = "NOT"`, []string{"chk"}},
	{"quotes and backslashes", &query.Compare{Field: `attr.we"ird\key`, Op: query.Eq, Value: str(`say "hi" \o/`)},
		`"attr.we\"ird\\key" = "say \"hi\" \\o/"`, []string{"inv"}},
	{"in", &query.In{Field: "kind", Values: []query.Value{str("producer"), str("consumer")}},
		`"kind" IN ["producer", "consumer"]`, []string{"chk", "fe"}},
	{"empty in", &query.In{Field: "kind"}, `"kind" IN []`, nil},
	{"exists", &query.Exists{Field: "attr.http.route"}, `"attr.http.route" EXISTS`, []string{"fe", "inv"}},
	{"not", &query.Not{X: &query.Exists{Field: "attr.customer_id"}}, `NOT ("attr.customer_id" EXISTS)`, []string{"fe", "gw"}},
	{"and of or", &query.And{Terms: []query.Expr{
		&query.Or{Terms: []query.Expr{
			&query.Compare{Field: "service", Op: query.Eq, Value: str("checkout")},
			&query.Compare{Field: "service", Op: query.Eq, Value: str("frontend")},
		}},
		&query.Compare{Field: "error", Op: query.Eq, Value: str("true")},
	}}, `(("service" = "checkout") OR ("service" = "frontend")) AND ("error" = "true")`, []string{"chk"}},
}

func TestCompileFilter(t *testing.T) {
	for _, tt := range filterCases {
		got, err := compileFilter(tt.in)
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if got != tt.want {
			t.Errorf("%s:\n got %s\nwant %s", tt.name, got, tt.want)
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

// writeFilterFixture writes filterSpans and filterTraces (inv and fe in trace t-inv, chk in t-chk, gw in
// t-gw) and returns the document name of each id.
func writeFilterFixture(t *testing.T, s *Store) map[string]string {
	t.Helper()
	names := map[string]string{}
	traceOf := map[string]string{"inv": "t-inv", "fe": "t-inv", "chk": "t-chk", "gw": "t-gw"}
	traceIDs := map[string]string{}
	var traces []document.Trace
	for i, name := range slices.Sorted(maps.Keys(filterTraces)) {
		tr := filterTraces[name]
		tr.TraceID = fmt.Sprintf("%032x", i+1)
		tr.ID, tr.Start = tr.TraceID, 1_764_000_000_000_000
		traceIDs[name], names[tr.ID] = tr.TraceID, name
		traces = append(traces, tr)
	}
	var spans []document.Span
	for i, name := range slices.Sorted(maps.Keys(filterSpans)) {
		sp := filterSpans[name]
		sp.TraceID, sp.SpanID = traceIDs[traceOf[name]], fmt.Sprintf("%016x", i+1)
		sp.ID = sp.TraceID + "-" + sp.SpanID
		if sp.Start == 0 {
			sp.Start = 1_764_000_000_000_000 + int64(i)
		}
		sp.End = sp.Start + sp.Duration
		names[sp.ID] = name
		spans = append(spans, sp)
	}
	if err := s.Write(context.Background(), spans, traces); err != nil {
		t.Fatal(err)
	}
	return names
}

// matched runs filter e on index ix and returns the sorted names of the documents it matched.
func matched(t *testing.T, s *Store, names map[string]string, ix store.Index, e query.Expr) ([]string, error) {
	t.Helper()
	res, err := s.Search(context.Background(), store.Request{Index: ix, Filter: e, Limit: store.MaxLimit})
	if err != nil {
		return nil, err
	}
	var got []string
	for _, sp := range res.Spans {
		got = append(got, names[sp.ID])
	}
	for _, tr := range res.Traces {
		got = append(got, names[tr.ID])
	}
	slices.Sort(got)
	return got, nil
}

// TestFiltersInMeilisearch runs the compiled filters, and the filters of compiled queries, in Meilisearch on
// real documents: each must be accepted and match exactly the documents its meaning says.
func TestFiltersInMeilisearch(t *testing.T) {
	t.Parallel()
	s := openStore(t, sharedServer(t), nil)
	names := writeFilterFixture(t, s)
	for _, tt := range filterCases {
		got, err := matched(t, s, names, store.Spans, tt.in)
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
		} else if !slices.Equal(got, tt.match) {
			t.Errorf("%s: %s matched %v, want %v", tt.name, tt.want, got, tt.match)
		}
	}

	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		src           string
		spans, traces []string // nil: the query has no filter on that index
	}{
		{`customer_id=123 service=inventory-service trace.duration>500ms`, []string{"inv"}, []string{"t-chk", "t-inv"}},
		{`NOT (customer_id=123 OR customer_id=456) kind IN [producer, "CONSUMER"]`, []string{"fe"}, nil},
		{`attr.messaging.system EXISTS attr.http.route="/stock/{sku}" duration>=1.5s`, []string{"fe"}, nil},
		{`name="say \"hi\"" status!=error`, []string{"fe"}, nil},
		{`trace.customer_id=123 trace.service=inventory-service trace.error_count=0`, nil, []string{"t-inv"}},
		{`trace.customer_id!=123 trace.span_count<2`, nil, []string{"t-chk", "t-gw"}},
	} {
		q, err := query.Compile(tt.src, now)
		if err != nil {
			t.Fatalf("Compile(%q): %v", tt.src, err)
		}
		for _, part := range []struct {
			ix   store.Index
			e    query.Expr
			want []string
		}{{store.Spans, q.Span, tt.spans}, {store.Traces, q.Trace, tt.traces}} {
			if (part.e == nil) != (part.want == nil) {
				t.Errorf("%q: filter on %s is %v, want one: %v", tt.src, part.ix, part.e, part.want != nil)
				continue
			}
			if part.e == nil {
				continue
			}
			f, _ := compileFilter(part.e)
			got, err := matched(t, s, names, part.ix, part.e)
			if err != nil {
				t.Errorf("%q on %s (%s): %v", tt.src, part.ix, f, err)
			} else if !slices.Equal(got, part.want) {
				t.Errorf("%q on %s: %s matched %v, want %v", tt.src, part.ix, f, got, part.want)
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

// fuzzInput reports whether s is usable as a fuzzed attribute key or value: printable UTF-8 (Meilisearch
// stores invalid UTF-8 as replacement characters), not blank (Meilisearch trims filter values and does not
// index empty ones), and short enough to stay far from Meilisearch's facet value length limit.
func fuzzInput(s string) bool {
	if len(s) > 64 || strings.TrimSpace(s) == "" || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if !unicode.IsPrint(r) && r != ' ' {
			return false
		}
	}
	return true
}

// FuzzCompileFilter checks, in Meilisearch, that any attribute key and value survive compilation: of three
// documents holding the value, another value and no such attribute, "!=" must match the last two and "IN"
// of both values the first two. A filter Meilisearch read with another field or value, or could not parse,
// fails. Each input writes three documents, so this fuzzes at tens of inputs per second.
func FuzzCompileFilter(f *testing.F) {
	f.Add("service", "inventory-service", false)
	f.Add(`attr.a"b\c`, `x\"y\\`, true)
	f.Add("NOT", "AND", false)
	s := openStore(f, sharedServer(f), nil)
	var n atomic.Int64
	f.Fuzz(func(t *testing.T, key, value string, in bool) {
		if !fuzzInput(key) || !fuzzInput(value) {
			return
		}
		trace := fmt.Sprintf("%032x", n.Add(1))
		docs := spans(3, "f")
		for i := range docs {
			docs[i].TraceID, docs[i].ID = trace, trace+"-"+docs[i].SpanID
		}
		docs[0].Attr = map[string]any{key: value}
		docs[1].Attr = map[string]any{key: value + "2"}
		if err := s.Write(context.Background(), docs, nil); err != nil {
			t.Fatal(err)
		}
		field := "attr." + key
		var e query.Expr = &query.Compare{Field: field, Op: query.Ne, Value: str(value)}
		want := []string{docs[1].ID, docs[2].ID}
		if in {
			e = &query.In{Field: field, Values: []query.Value{str(value), str(value + "2")}}
			want = []string{docs[0].ID, docs[1].ID}
		}
		f, err := compileFilter(e)
		if err != nil {
			t.Fatal(err)
		}
		res, err := s.Search(context.Background(), store.Request{Index: store.Spans, Filter: &query.And{Terms: []query.Expr{
			&query.Compare{Field: "trace_id", Op: query.Eq, Value: str(trace)}, e}}})
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		var got []string
		for _, sp := range res.Spans {
			got = append(got, sp.ID)
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Fatalf("%s matched %v, want %v", f, got, want)
		}
	})
}
