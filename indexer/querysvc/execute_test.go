package querysvc

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/indexer/document"
	"github.com/meshtrace/meshtrace/indexer/query"
	"github.com/meshtrace/meshtrace/indexer/store"
	"github.com/meshtrace/meshtrace/indexer/tenant"
)

// recorder is a store.Store that answers searches from canned results and records the requests.
type recorder struct {
	reqs    []store.Request
	answers []store.Result
}

func (r *recorder) Write(context.Context, []document.Span, []document.Trace) error { return nil }
func (r *recorder) GetTraces(context.Context, []string) ([]document.Trace, error)  { return nil, nil }
func (r *recorder) DeleteBefore(context.Context, time.Time, query.Expr) error      { return nil }
func (r *recorder) Close() error                                                   { return nil }
func (r *recorder) Fields(context.Context) ([]string, error)                       { return nil, nil }
func (r *recorder) Facet(context.Context, store.Index, query.Expr, string, int) ([]store.FacetCount, error) {
	return nil, nil
}
func (r *recorder) Search(_ context.Context, req store.Request) (store.Result, error) {
	r.reqs = append(r.reqs, req)
	res := r.answers[0]
	r.answers = r.answers[1:]
	return res, nil
}

var now = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func compile(t *testing.T, src string) *query.Query {
	t.Helper()
	q, err := query.Compile(src, now)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func TestExecuteJoinsTracesToSpans(t *testing.T) {
	// The join side matches more than fits: asked in any order without Distinct first, then as asked (the
	// most recent distinct traces).
	r := &recorder{answers: []store.Result{
		{Spans: []document.Span{{TraceID: "x"}, {TraceID: "y"}}, Total: 1500},
		{Spans: []document.Span{{TraceID: "a"}, {TraceID: "b"}}, Total: 1500},
		{Traces: []document.Trace{{ID: "a"}}, Total: 1},
	}}
	res, err := Execute(admin, r, compile(t, `customer_id=123 "reset" trace.duration>1s since=1h sort=-duration`), Page{Limit: 5}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.reqs) != 3 {
		t.Fatalf("%d requests, want 3", len(r.reqs))
	}
	since := now.Add(-time.Hour).UnixMicro()
	for i, join := range r.reqs[:2] {
		if join.Index != store.Spans || (join.Distinct == "trace_id") != (i == 1) || join.Limit != store.MaxLimit || len(join.Text) != 1 ||
			join.Filter.String() != "attr.customer_id = 123 AND start >= "+itoa(since) || join.Unordered != (i == 0) {
			t.Errorf("join request %d = %+v (filter %s)", i, join, join.Filter)
		}
	}
	main := r.reqs[2]
	if main.Index != store.Traces || main.Limit != 5 || len(main.Text) != 0 ||
		main.Filter.String() != "duration > 1000000 AND start >= "+itoa(since)+" AND trace_id IN [a, b]" {
		t.Errorf("main request = %+v (filter %s)", main, main.Filter)
	}
	if len(main.Sort) != 1 || main.Sort[0].Field.Path != "duration" || !main.Sort[0].Desc || main.Sort[0].Field.Scope != query.TraceScope {
		t.Errorf("sort = %+v, want trace duration descending", main.Sort)
	}
	if !res.Partial || len(res.Traces) != 1 {
		t.Errorf("result = %+v, want one trace, partial (1500 spans matched, 2 traces used)", res)
	}
}

// TestExecuteJoinThatFitsIsNotSorted checks that a join side whose matches all fit is asked once, in any
// order and without Distinct (the ids are made distinct here).
func TestExecuteJoinThatFitsIsNotSorted(t *testing.T) {
	r := &recorder{answers: []store.Result{
		{Spans: []document.Span{{TraceID: "a"}, {TraceID: "b"}, {TraceID: "a"}}, Total: 3},
		{Traces: []document.Trace{{ID: "a"}}, Total: 1},
	}}
	res, err := Execute(admin, r, compile(t, `customer_id=123 trace.duration>1s`), Page{}, nil)
	if err != nil || len(r.reqs) != 2 || !r.reqs[0].Unordered || r.reqs[0].Distinct != "" || r.reqs[1].Unordered || res.Partial ||
		r.reqs[1].Filter.String() != "duration > 1000000 AND trace_id IN [a, b]" {
		t.Errorf("Execute = %+v, %v after requests %+v; want one unordered join and the main search", res, err, r.reqs)
	}
}

func TestExecuteEmptyJoinSkipsSecondSearch(t *testing.T) {
	r := &recorder{answers: []store.Result{{}}}
	q := compile(t, "service=a trace.error_count>0")
	q.Target = query.SpanScope
	res, err := Execute(admin, r, q, Page{}, nil)
	if err != nil || len(r.reqs) != 1 || r.reqs[0].Index != store.Traces || len(res.Spans) != 0 {
		t.Errorf("Execute = %+v, %v after %d requests; want one trace request and no hits", res, err, len(r.reqs))
	}
}

func TestExecuteSingleScope(t *testing.T) {
	r := &recorder{answers: []store.Result{{Total: 3}}}
	res, err := Execute(admin, r, compile(t, "service=a"), Page{Offset: 10, Limit: 20}, nil)
	if err != nil || len(r.reqs) != 1 || res.Total != 3 || res.Partial {
		t.Fatalf("Execute = %+v, %v", res, err)
	}
	if req := r.reqs[0]; req.Index != store.Spans || req.Offset != 10 || req.Limit != 20 || req.Filter.String() != "service = a" {
		t.Errorf("request = %+v", req)
	}
}

func TestExecuteSortOutOfScope(t *testing.T) {
	q := compile(t, "service=a sort=trace.span_count")
	_, err := Execute(admin, &recorder{}, q, Page{}, nil)
	if !errors.Is(err, store.ErrBadRequest) {
		t.Errorf("sorting spans by a trace field: err = %v, want ErrBadRequest", err)
	}
}

func itoa(n int64) string { return query.Int(n).Str }

func TestExecuteDropsRepeatedSortKeys(t *testing.T) {
	span := func(path string, desc bool) query.Sort {
		return query.Sort{Field: query.Field{Path: path, Scope: query.SpanScope, Kind: query.KindTime}, Desc: desc}
	}
	tests := []struct {
		name   string
		src    string       // compiled, then sort replaced by keys when set
		keys   []query.Sort // built directly: Compile refuses repeats
		target query.Scope
		want   string
	}{
		{name: "distinct keys kept in order", src: "sort=-duration sort=start", want: "-duration start"},
		{name: "span and trace start on traces", src: "trace.span_count>1 sort=start sort=-trace.start", target: query.TraceScope, want: "start"},
		{name: "repeats built directly", src: "service=a", keys: []query.Sort{span("start", true), span("end", false), span("start", false), span("end", true), span("duration", false)},
			want: "-start end duration"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := compile(t, tt.src)
			if tt.keys != nil {
				q.Sort = tt.keys
			}
			q.Target = tt.target
			r := &recorder{answers: []store.Result{{Traces: []document.Trace{{TraceID: "a"}}}, {}}}
			if _, err := Execute(admin, r, q, Page{}, nil); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, s := range r.reqs[len(r.reqs)-1].Sort {
				k := s.Field.Path
				if s.Desc {
					k = "-" + k
				}
				got = append(got, k)
			}
			if g := strings.Join(got, " "); g != tt.want {
				t.Errorf("sort = %q, want %q", g, tt.want)
			}
		})
	}
}

func TestImplied(t *testing.T) {
	keys := []string{"customer_id"}
	tests := []struct {
		query string
		keys  []string
		want  string // the implied trace conditions, joined with AND; "" for none
	}{
		{"service=a", nil, "services = a"},
		{"customer_id=123 service=a", keys, "keys.customer_id = 123 AND services = a"},
		{"customer_id=123", nil, ""},           // not a rolled-up key
		{"resource.customer_id=123", keys, ""}, // the rollup prefers the span attribute
		{"customer_id IN [1, 2]", keys, "keys.customer_id IN [1, 2]"},
		{"customer_id=123.0", keys, ""},     // the rollup writes 123
		{`customer_id=""`, keys, ""},        // the rollup skips empty values
		{"customer_id!=1", keys, ""},        // a negation implies nothing
		{"service=a OR service=b", nil, ""}, // nor does a disjunction
		{"duration>1s customer_id=7", keys, "keys.customer_id = 7"},
	}
	for _, tt := range tests {
		q := compile(t, tt.query)
		got := query.Conjoin(implied(q.Span, tt.keys)...)
		s := ""
		if got != nil {
			s = got.String()
		}
		if s != tt.want {
			t.Errorf("implied(%q, %v) = %q, want %q", tt.query, tt.keys, s, tt.want)
		}
	}
}

// TestExecuteNarrowsJoinByImpliedConditions checks the narrowed plan: candidates on the trace index with
// the implied conditions, the span join among them, the main search among the traces that passed; and the
// plain join when the candidates do not fit.
func TestExecuteNarrowsJoinByImpliedConditions(t *testing.T) {
	src := "customer_id=123 service=inventory trace.duration>500ms"
	r := &recorder{answers: []store.Result{
		{Traces: []document.Trace{{TraceID: "a"}, {TraceID: "b"}}, Total: 2},
		{Spans: []document.Span{{TraceID: "b"}}, Total: 1},
		{Traces: []document.Trace{{ID: "b"}}, Total: 1},
	}}
	res, err := Execute(admin, r, compile(t, src), Page{}, []string{"customer_id"})
	if err != nil || len(r.reqs) != 3 || len(res.Traces) != 1 || res.Partial {
		t.Fatalf("Execute = %+v, %v after %d requests; want 3 requests, one trace", res, err, len(r.reqs))
	}
	for i, want := range []struct {
		index  store.Index
		filter string
	}{
		{store.Traces, "duration > 500000 AND keys.customer_id = 123 AND services = inventory"},
		{store.Spans, "attr.customer_id = 123 AND service = inventory AND trace_id IN [a, b]"},
		{store.Traces, "duration > 500000 AND trace_id IN [b]"},
	} {
		if got := r.reqs[i]; got.Index != want.index || got.Filter.String() != want.filter || got.Unordered != (i < 2) {
			t.Errorf("request %d = %+v (filter %s), want %v %s", i, got, got.Filter, want.index, want.filter)
		}
	}

	// Candidates that do not fit: the plain join.
	r = &recorder{answers: []store.Result{
		{Traces: []document.Trace{{TraceID: "a"}}, Total: 5000},
		{Spans: []document.Span{{TraceID: "a"}}, Total: 1},
		{Traces: []document.Trace{{ID: "a"}}, Total: 1},
	}}
	if _, err := Execute(admin, r, compile(t, src), Page{}, []string{"customer_id"}); err != nil || len(r.reqs) != 3 ||
		r.reqs[1].Filter.String() != "attr.customer_id = 123 AND service = inventory" {
		t.Errorf("after candidates that do not fit: err %v, requests %+v; want the plain join", err, r.reqs)
	}
}

// admin is the context of a read that sees every tenant.
var admin = tenant.NewContext(context.Background(), tenant.All())
