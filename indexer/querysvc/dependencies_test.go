package querysvc

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/indexer/document"
	"github.com/meshtrace/meshtrace/indexer/query"
	"github.com/meshtrace/meshtrace/indexer/store"
	"github.com/meshtrace/meshtrace/indexer/store/embedded"
)

// facetStore answers Facet with canned counts and records its arguments.
type facetStore struct {
	recorder
	index  store.Index
	filter query.Expr
	field  string
	limit  int
	counts []store.FacetCount
}

func (f *facetStore) Facet(_ context.Context, index store.Index, filter query.Expr, field string, limit int) ([]store.FacetCount, error) {
	f.index, f.filter, f.field, f.limit = index, filter, field, limit
	return f.counts, nil
}

func TestDependencies(t *testing.T) {
	st := &facetStore{counts: []store.FacetCount{
		{Value: "frontend>checkout", Count: 7}, {Value: "checkout>topic:orders", Count: 2}, {Value: "broken", Count: 1},
	}}
	since, until := time.UnixMicro(1_000_000), time.UnixMicro(2_000_000)
	got, err := New(st, Config{}).Dependencies(admin, since, until)
	if err != nil {
		t.Fatal(err)
	}
	want := []Dependency{{Parent: "frontend", Child: "checkout", CallCount: 7}, {Parent: "checkout", Child: "topic:orders", CallCount: 2}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Dependencies = %+v, want %+v", got, want)
	}
	wantFilter := &query.And{Terms: []query.Expr{
		&query.Compare{Field: "start", Op: query.Ge, Value: query.Int(1_000_000)},
		&query.Compare{Field: "start", Op: query.Le, Value: query.Int(2_000_000)},
	}}
	if st.index != store.Traces || st.field != "edges" || st.limit != store.MaxFacetValues || !reflect.DeepEqual(st.filter, wantFilter) {
		t.Errorf("Facet(%s, %v, %q, %d), want the traces' edges started in the window, %d values", st.index, st.filter, st.field, st.limit, store.MaxFacetValues)
	}
	if _, err := New(st, Config{}).Dependencies(admin, until, since); !errors.Is(err, store.ErrBadRequest) {
		t.Errorf("window ending before it starts: err = %v, want ErrBadRequest", err)
	}
}

func TestQueryDependenciesTraceConditions(t *testing.T) {
	st := &facetStore{counts: []store.FacetCount{{Value: "frontend>checkout", Count: 3}}}
	q := &query.Query{Trace: &query.Compare{Field: "error_count", Op: query.Gt, Value: query.Int(0)}, Since: 5}
	got, partial, err := New(st, Config{}).QueryDependencies(admin, q)
	if err != nil || partial {
		t.Fatal(err, partial)
	}
	if want := []Dependency{{Parent: "frontend", Child: "checkout", CallCount: 3}}; !reflect.DeepEqual(got, want) {
		t.Errorf("QueryDependencies = %+v, want %+v", got, want)
	}
	wantFilter := &query.And{Terms: []query.Expr{q.Trace, &query.Compare{Field: "start", Op: query.Ge, Value: query.Int(5)}}}
	if st.index != store.Traces || st.field != "edges" || !reflect.DeepEqual(st.filter, wantFilter) {
		t.Errorf("Facet(%s, %v, %q), want the edges of the traces with errors since 5", st.index, st.filter, st.field)
	}
}

// TestQueryDependenciesJoin runs QueryDependencies over the embedded store: a span condition counts only the
// edges of the traces holding a matching span, and past store.MaxLimit matching traces the answer is partial.
func TestQueryDependenciesJoin(t *testing.T) {
	st, err := embedded.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	const n = store.MaxLimit + 5 // traces of customer 1 (a>b); one more of customer 2 (a>c)
	var spans []document.Span
	var traces []document.Trace
	for i := range n + 1 {
		id, customer, edge := fmt.Sprintf("%032x", i+1), "1", document.Edge("a", "b")
		if i == n {
			customer, edge = "2", document.Edge("a", "c")
		}
		start := int64(1_000_000 + i)
		spans = append(spans, document.Span{ID: id + "-0000000000000001", TraceID: id, SpanID: "0000000000000001", Name: "op", Service: "a",
			Kind: "server", StatusCode: "unset", Start: start, End: start + 5, Duration: 5, Attr: map[string]any{"customer_id": customer}})
		traces = append(traces, document.Trace{ID: id, TraceID: id, Start: start, End: start + 5, Duration: 5, SpanCount: 1, Services: []string{"a"},
			Edges: []string{edge}})
	}
	if err := st.Write(admin, spans, traces); err != nil {
		t.Fatal(err)
	}
	svc := New(st, Config{})
	run := func(src string) ([]Dependency, bool) {
		t.Helper()
		q, err := query.Compile(src, time.UnixMicro(2_000_000))
		if err != nil {
			t.Fatal(err)
		}
		deps, partial, err := svc.QueryDependencies(admin, q)
		if err != nil {
			t.Fatal(err)
		}
		return deps, partial
	}
	if deps, partial := run("customer_id=2"); !reflect.DeepEqual(deps, []Dependency{{Parent: "a", Child: "c", CallCount: 1}}) || partial {
		t.Errorf("customer_id=2: %+v (partial %v), want a>c once", deps, partial)
	}
	if deps, partial := run("customer_id=1"); !reflect.DeepEqual(deps, []Dependency{{Parent: "a", Child: "b", CallCount: store.MaxLimit}}) || !partial {
		t.Errorf("customer_id=1: %+v (partial %v), want a>b in the %d most recent traces, partial", deps, partial, store.MaxLimit)
	}
	if deps, partial := run("trace.span_count=1"); len(deps) != 2 || partial { // trace conditions only: no join, no bound
		t.Errorf("trace.span_count=1: %+v (partial %v), want both edges, complete", deps, partial)
	}
	if deps, _ := run("customer_id=3"); deps == nil || len(deps) != 0 {
		t.Errorf("no match: %#v, want an empty graph", deps)
	}
}
