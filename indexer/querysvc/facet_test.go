package querysvc

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/indexer/document"
	"github.com/meshtrace/meshtrace/indexer/query"
	"github.com/meshtrace/meshtrace/indexer/store"
)

// facetCall is one store.Store.Facet call.
type facetCall struct {
	index  store.Index
	filter string // query syntax, "" for nil
	field  string
	limit  int
}

// countStore answers Facet from answers (by field and filter, in query syntax), checking the field with
// store.CheckFacet, and searches as recorder does; it records the Facet calls.
type countStore struct {
	recorder
	answers map[string][]store.FacetCount // "field|filter"
	calls   []facetCall
}

func (c *countStore) Facet(_ context.Context, index store.Index, filter query.Expr, field string, limit int) ([]store.FacetCount, error) {
	limit, err := store.CheckFacet(index, field, limit)
	if err != nil {
		return nil, err
	}
	f := ""
	if filter != nil {
		f = filter.String()
	}
	c.calls = append(c.calls, facetCall{index, f, field, limit})
	counts := c.answers[field+"|"+f]
	return counts[:min(len(counts), limit)], nil
}

// values returns counts for the values, n, n-1, ... down.
func values(n int, vs ...string) []store.FacetCount {
	out := make([]store.FacetCount, len(vs))
	for i, v := range vs {
		out[i] = store.FacetCount{Value: v, Count: n - i}
	}
	return out
}

func TestServices(t *testing.T) {
	since, until := time.UnixMicro(1_000), time.UnixMicro(2_000)
	st := &countStore{answers: map[string][]store.FacetCount{
		"service|": values(10, "b-svc", "a-svc"),
		"service|start >= 1000 AND start <= 2000":    values(10, "c-svc"),
		"service|start >= 1000":                      values(10, "c-svc", "b-svc"),
		"service|start <= 2000 AND start >= 1000000": nil,
	}}
	svc := New(st, Config{})
	for _, c := range []struct {
		w    Window
		want []string
	}{
		{Window{}, []string{"a-svc", "b-svc"}},
		{Window{Since: since, Until: until}, []string{"c-svc"}},
		{Window{Since: since}, []string{"b-svc", "c-svc"}},
	} {
		got, truncated, err := svc.Services(admin, c.w)
		if err != nil || truncated || !slices.Equal(got, c.want) {
			t.Errorf("Services(%+v) = %v, %v, %v; want %v", c.w, got, truncated, err, c.want)
		}
	}
	if want := (facetCall{store.Spans, "", "service", store.MaxFacetValues}); st.calls[0] != want {
		t.Errorf("Facet call %+v, want %+v", st.calls[0], want)
	}
	if got, _, err := New(&countStore{}, Config{}).Services(admin, Window{}); err != nil || got == nil || len(got) != 0 {
		t.Errorf("no services: %#v, %v; want empty, not nil", got, err)
	}
}

func TestServicesTruncated(t *testing.T) {
	many := make([]string, store.MaxFacetValues+1)
	for i := range many {
		many[i] = fmt.Sprintf("svc-%04d", i)
	}
	st := &countStore{answers: map[string][]store.FacetCount{"service|": values(len(many)+1, many...)}}
	got, truncated, err := New(st, Config{}).Services(admin, Window{})
	if err != nil || !truncated || len(got) != store.MaxFacetValues || got[len(got)-1] != many[store.MaxFacetValues-1] {
		t.Errorf("Services past the cap: %d names, truncated %v, %v; want the %d busiest, truncated", len(got), truncated, err, store.MaxFacetValues)
	}
}

func TestOperations(t *testing.T) {
	st := &countStore{answers: map[string][]store.FacetCount{
		"kind|service = a-svc":                                    values(10, "server", "client"),
		"name|service = a-svc AND kind = server":                  values(10, "op1", "op0"),
		"name|service = a-svc AND kind = client":                  values(10, "op0"),
		"name|kind = client":                                      values(10, "op0", "op9"),
		"kind|start >= 5 AND service = b-svc":                     values(10, "internal"),
		"name|start >= 5 AND service = b-svc AND kind = internal": values(10, "tick"),
	}}
	svc := New(st, Config{})
	for _, c := range []struct {
		oq    OperationQuery
		want  []Operation
		calls int
	}{
		{OperationQuery{Service: "a-svc"}, []Operation{{"op0", "client"}, {"op0", "server"}, {"op1", "server"}}, 3},
		{OperationQuery{SpanKind: "client"}, []Operation{{"op0", "client"}, {"op9", "client"}}, 1},
		{OperationQuery{Service: "b-svc", Window: Window{Since: time.UnixMicro(5)}}, []Operation{{"tick", "internal"}}, 2},
		{OperationQuery{Service: "nobody"}, []Operation{}, 1},
	} {
		st.calls = nil
		got, truncated, err := svc.Operations(admin, c.oq)
		if err != nil || truncated || got == nil || !slices.Equal(got, c.want) || len(st.calls) != c.calls {
			t.Errorf("Operations(%+v) = %#v, %v, %v in %d facets; want %v in %d", c.oq, got, truncated, err, len(st.calls), c.want, c.calls)
		}
	}
}

func TestFacet(t *testing.T) {
	q := func(src string) *query.Query { return compile(t, src) }
	since := now.Add(-time.Hour).UnixMicro()
	failing := fmt.Sprintf("error = true AND start >= %d", since)
	st := &countStore{answers: map[string][]store.FacetCount{
		"attr.customer_id|" + failing: values(10, "123", "456", "789"),
		"services|":                   values(10, "checkout"),
		"status_code|":                values(10, "ok", "error"),
	}}
	svc := New(st, Config{})
	for _, c := range []struct {
		src, field string
		limit      int
		want       FacetResult
		call       facetCall
	}{
		{"error=true since=1h", "customer_id", 2,
			FacetResult{Field: "attr.customer_id", Values: values(10, "123", "456"), Truncated: true},
			facetCall{store.Spans, failing, "attr.customer_id", 3}},
		{"error=true since=1h", "attr.customer_id", 0,
			FacetResult{Field: "attr.customer_id", Values: values(10, "123", "456", "789")},
			facetCall{store.Spans, failing, "attr.customer_id", store.DefaultFacetLimit + 1}},
		{"sort=-duration", "trace.service", 0, // a trace field counts traces; sort keys are ignored
			FacetResult{Field: "services", Values: values(10, "checkout")},
			facetCall{store.Traces, "", "services", store.DefaultFacetLimit + 1}},
		{"", "status", store.MaxFacetValues,
			FacetResult{Field: "status_code", Values: values(10, "ok", "error")},
			facetCall{store.Spans, "", "status_code", store.MaxFacetValues}},
		{"service=nope", "service", 0, FacetResult{Field: "service", Values: []store.FacetCount{}},
			facetCall{store.Spans, "service = nope", "service", store.DefaultFacetLimit + 1}},
	} {
		st.calls = nil
		got, err := svc.Facet(admin, q(c.src), c.field, c.limit)
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("Facet(%q, %s, %d) = %+v, %v; want %+v", c.src, c.field, c.limit, got, err, c.want)
		}
		if len(st.calls) != 1 || st.calls[0] != c.call {
			t.Errorf("Facet(%q, %s, %d): store calls %+v, want %+v", c.src, c.field, c.limit, st.calls, c.call)
		}
	}
	for _, bad := range []struct {
		field string
		limit int
	}{{"trace_id", 0}, {"duration", 0}, {"trace.duration", 0}, {"attr.*", 0}, {"service", -1}, {"service", store.MaxFacetValues + 1}} {
		if _, err := svc.Facet(admin, q(""), bad.field, bad.limit); !errors.Is(err, store.ErrBadRequest) {
			t.Errorf("Facet(%q, limit %d): err = %v, want ErrBadRequest", bad.field, bad.limit, err)
		}
	}
}

// TestFacetJoins checks that a facet over spans with trace conditions counts the spans of the joined traces,
// and that free text is searched first and counted by span id, partial past store.MaxLimit matches.
func TestFacetJoins(t *testing.T) {
	st := &countStore{recorder: recorder{answers: []store.Result{
		{Traces: []document.Trace{{TraceID: "a"}, {TraceID: "b"}}, Total: 2},
		{Spans: []document.Span{{ID: "a-1"}, {ID: "b-2"}}, Total: 1500},
		{Total: 0},
	}}}
	svc := New(st, Config{})
	got, err := svc.Facet(admin, compile(t, "trace.error_count>0"), "service", 0)
	if err != nil || got.Partial || len(st.calls) != 1 || st.calls[0].filter != "trace_id IN [a, b]" {
		t.Errorf("trace condition: %+v, %v, calls %+v; want the services of traces a and b", got, err, st.calls)
	}
	st.calls = nil
	got, err = svc.Facet(admin, compile(t, `"connection reset"`), "service", 0)
	if err != nil || !got.Partial || len(st.calls) != 1 || st.calls[0].filter != "id IN [a-1, b-2]" {
		t.Errorf("free text: %+v, %v, calls %+v; want the services of spans a-1 and b-2, partial", got, err, st.calls)
	}
	if r := st.reqs[1]; r.Index != store.Spans || len(r.Text) != 1 || r.Limit != store.MaxLimit {
		t.Errorf("free-text search %+v, want spans, the phrase, %d hits", r, store.MaxLimit)
	}
	st.calls = nil
	got, err = svc.Facet(admin, compile(t, `nothing`), "service", 0)
	if err != nil || got.Values == nil || len(got.Values) != 0 || len(st.calls) != 0 {
		t.Errorf("free text matching nothing: %#v, %v, calls %+v; want no values and no facet", got, err, st.calls)
	}
}
