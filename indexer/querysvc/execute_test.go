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
)

// recorder is a store.Store that answers searches from canned results and records the requests.
type recorder struct {
	reqs    []store.Request
	answers []store.Result
}

func (r *recorder) Write(context.Context, []document.Span, []document.Trace) error { return nil }
func (r *recorder) GetTraces(context.Context, []string) ([]document.Trace, error)  { return nil, nil }
func (r *recorder) DeleteBefore(context.Context, time.Time) error                  { return nil }
func (r *recorder) Close() error                                                   { return nil }
func (r *recorder) Fields(context.Context) ([]string, error)                       { return nil, nil }
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
	// The join side matches more than fits: asked in any order first, then again in order (most recent).
	r := &recorder{answers: []store.Result{
		{Spans: []document.Span{{TraceID: "x"}, {TraceID: "y"}}, Total: 1500},
		{Spans: []document.Span{{TraceID: "a"}, {TraceID: "b"}}, Total: 1500},
		{Traces: []document.Trace{{ID: "a"}}, Total: 1},
	}}
	res, err := Execute(context.Background(), r, compile(t, `customer_id=123 "reset" trace.duration>1s since=1h sort=-duration`), Page{Limit: 5})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.reqs) != 3 {
		t.Fatalf("%d requests, want 3", len(r.reqs))
	}
	since := now.Add(-time.Hour).UnixMicro()
	for i, join := range r.reqs[:2] {
		if join.Index != store.Spans || join.Distinct != "trace_id" || join.Limit != store.MaxLimit || len(join.Text) != 1 ||
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
// order.
func TestExecuteJoinThatFitsIsNotSorted(t *testing.T) {
	r := &recorder{answers: []store.Result{
		{Spans: []document.Span{{TraceID: "a"}, {TraceID: "b"}}, Total: 2},
		{Traces: []document.Trace{{ID: "a"}}, Total: 1},
	}}
	res, err := Execute(context.Background(), r, compile(t, `customer_id=123 trace.duration>1s`), Page{})
	if err != nil || len(r.reqs) != 2 || !r.reqs[0].Unordered || r.reqs[1].Unordered || res.Partial {
		t.Errorf("Execute = %+v, %v after requests %+v; want one unordered join and the main search", res, err, r.reqs)
	}
}

func TestExecuteEmptyJoinSkipsSecondSearch(t *testing.T) {
	r := &recorder{answers: []store.Result{{}}}
	q := compile(t, "service=a trace.error_count>0")
	q.Target = query.SpanScope
	res, err := Execute(context.Background(), r, q, Page{})
	if err != nil || len(r.reqs) != 1 || r.reqs[0].Index != store.Traces || len(res.Spans) != 0 {
		t.Errorf("Execute = %+v, %v after %d requests; want one trace request and no hits", res, err, len(r.reqs))
	}
}

func TestExecuteSingleScope(t *testing.T) {
	r := &recorder{answers: []store.Result{{Total: 3}}}
	res, err := Execute(context.Background(), r, compile(t, "service=a"), Page{Offset: 10, Limit: 20})
	if err != nil || len(r.reqs) != 1 || res.Total != 3 || res.Partial {
		t.Fatalf("Execute = %+v, %v", res, err)
	}
	if req := r.reqs[0]; req.Index != store.Spans || req.Offset != 10 || req.Limit != 20 || req.Filter.String() != "service = a" {
		t.Errorf("request = %+v", req)
	}
}

func TestExecuteSortOutOfScope(t *testing.T) {
	q := compile(t, "service=a sort=trace.span_count")
	_, err := Execute(context.Background(), &recorder{}, q, Page{})
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
			if _, err := Execute(context.Background(), r, q, Page{}); err != nil {
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
