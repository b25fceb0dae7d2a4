package querysvc

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/indexer/query"
	"github.com/meshtrace/meshtrace/indexer/store"
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
	got, err := New(st, Config{}).Dependencies(context.Background(), since, until)
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
	if _, err := New(st, Config{}).Dependencies(context.Background(), until, since); !errors.Is(err, store.ErrBadRequest) {
		t.Errorf("window ending before it starts: err = %v, want ErrBadRequest", err)
	}
}

func TestQueryDependenciesTraceConditions(t *testing.T) {
	st := &facetStore{counts: []store.FacetCount{{Value: "frontend>checkout", Count: 3}}}
	q := &query.Query{Trace: &query.Compare{Field: "error_count", Op: query.Gt, Value: query.Int(0)}, Since: 5}
	got, partial, err := New(st, Config{}).QueryDependencies(context.Background(), q)
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
