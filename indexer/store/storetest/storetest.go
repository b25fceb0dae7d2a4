// Package storetest is the conformance suite every store.Store passes: the same fixture, the same queries and
// the same answers, so the query language means one thing on every backend. A store's tests call Run with a
// constructor of empty stores.
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/indexer/document"
	"github.com/meshtrace/meshtrace/indexer/query"
	"github.com/meshtrace/meshtrace/indexer/querysvc"
	"github.com/meshtrace/meshtrace/indexer/store"
)

// spanFilter compiles src (span conditions and a time window, relative to Now) into a span index filter.
func spanFilter(t *testing.T, src string) query.Expr {
	t.Helper()
	q, err := query.Compile(src, Now)
	if err != nil || q.Trace != nil || len(q.Text) > 0 {
		t.Fatalf("Compile(%q): %v (trace conditions or free text: %v)", src, err, q != nil && (q.Trace != nil || len(q.Text) > 0))
	}
	terms := []query.Expr{q.Span}
	if q.Since != 0 {
		terms = append(terms, &query.Compare{Field: "start", Op: query.Ge, Value: query.Int(q.Since)})
	}
	if q.Until != 0 {
		terms = append(terms, &query.Compare{Field: "start", Op: query.Le, Value: query.Int(q.Until)})
	}
	return query.Conjoin(terms...)
}

// Run runs the suite. open returns a new, empty store; Run closes it.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	f := NewFixture()
	ctx := context.Background()
	load := func(t *testing.T) store.Store {
		s := open(t)
		t.Cleanup(func() {
			if err := s.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
		if err := s.Write(ctx, f.Spans, f.Traces); err != nil {
			t.Fatalf("Write fixture: %v", err)
		}
		return s
	}

	t.Run("Queries", func(t *testing.T) {
		s := load(t)
		for _, c := range Cases {
			name := c.Query
			if c.Target != "" {
				name += " (" + c.Target + ")"
			}
			t.Run(name, func(t *testing.T) { runCase(t, s, f, c) })
		}
	})
	t.Run("Distinct", func(t *testing.T) {
		s := load(t)
		res, err := s.Search(ctx, store.Request{Index: store.Spans, Distinct: "trace_id", Limit: 3})
		if err != nil {
			t.Fatal(err)
		}
		check(t, spanLabels(t, f, res), []string{"t8.2", "t6.2", "t3.5"}, true)
		if res.Total != 8 {
			t.Errorf("Total = %d, want 8 distinct traces", res.Total)
		}
	})
	t.Run("DistinctCountsPastOnePage", func(t *testing.T) {
		// More distinct values than one page of hits (store.MaxLimit): the total still counts every one, so a
		// scope join past the limit is reported partial.
		s := open(t)
		defer s.Close()
		const n = store.MaxLimit + 5
		spans := make([]document.Span, n)
		for i := range spans {
			tid, sid := fmt.Sprintf("%032x", 0xd000+i), fmt.Sprintf("%016x", i+1)
			spans[i] = document.Span{ID: tid + "-" + sid, TraceID: tid, SpanID: sid, Name: "x", Service: "s",
				Start: Now.UnixMicro() - int64(i), StatusCode: "unset"}
		}
		if err := s.Write(ctx, spans, nil); err != nil {
			t.Fatal(err)
		}
		res, err := s.Search(ctx, store.Request{Index: store.Spans, Distinct: "trace_id", Limit: store.MaxLimit})
		if err != nil {
			t.Fatal(err)
		}
		if res.Total != n || len(res.Spans) != store.MaxLimit {
			t.Errorf("Total %d with %d hits, want %d with %d", res.Total, len(res.Spans), n, store.MaxLimit)
		}
		// A facet counts every match, not one page of them.
		if got, err := s.Facet(ctx, store.Spans, nil, "service", 0); err != nil || !slices.Equal(got, []store.FacetCount{{Value: "s", Count: n}}) {
			t.Errorf("Facet(service) = %v, %v; want s (%d)", got, err, n)
		}
	})
	t.Run("BadRequest", func(t *testing.T) {
		s := load(t)
		_, err := s.Search(ctx, store.Request{Index: store.Spans, Limit: store.MaxLimit + 1})
		if !errors.Is(err, store.ErrBadRequest) {
			t.Errorf("Limit above MaxLimit: err = %v, want ErrBadRequest", err)
		}
	})
	t.Run("BadID", func(t *testing.T) {
		s := load(t)
		bad := f.Spans[0]
		bad.ID = "no/slashes"
		good := f.Spans[1]
		good.ID = "fresh-id"
		err := s.Write(ctx, []document.Span{good, bad}, nil)
		if !errors.Is(err, store.ErrBadRequest) {
			t.Fatalf("Write with id %q: err = %v, want ErrBadRequest", bad.ID, err)
		}
		res, err := s.Search(ctx, store.Request{Index: store.Spans, Filter: &query.Compare{Field: "id", Op: query.Eq, Value: query.Value{Str: good.ID}}})
		if err != nil || res.Total != 0 {
			t.Errorf("the refused batch was written in part: %d hits, %v", res.Total, err)
		}
	})
	t.Run("GetTraces", func(t *testing.T) {
		s := load(t)
		got, err := s.GetTraces(ctx, []string{t5, t1, "ffff"})
		if err != nil {
			t.Fatal(err)
		}
		want := []document.Trace{f.Traces[0], f.Traces[4]}
		slices.SortFunc(got, func(a, b document.Trace) int { return strings.Compare(a.ID, b.ID) })
		if !sameJSON(got, want) {
			t.Errorf("GetTraces = %+v, want %+v", got, want)
		}
	})
	t.Run("Upsert", func(t *testing.T) {
		s := load(t)
		tr := f.Traces[0]
		tr.SpanCount, tr.Services = 99, append(slices.Clone(tr.Services), "late-service")
		if err := s.Write(ctx, nil, []document.Trace{tr}); err != nil {
			t.Fatal(err)
		}
		updated := *f
		updated.Traces = append([]document.Trace{tr}, f.Traces[1:]...)
		runCase(t, s, &updated, Case{Query: "trace.span_count=99 trace.services=late-service", Want: []string{"t1"}})
		runCase(t, s, &updated, Case{Query: "trace.root_service=gateway since=1h", Want: []string{"t1", "t2", "t3", "t4"}})
	})
	t.Run("Overflow", func(t *testing.T) {
		s := load(t)
		sp := overflowSpan(f)
		if err := s.Write(ctx, []document.Span{sp}, nil); err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			name   string
			filter query.Expr
			text   []string
			want   int
		}{
			{"by id", &query.Compare{Field: "id", Op: query.Eq, Value: query.Value{Str: sp.ID}}, nil, 1},
			{"by an indexed attribute", &query.Compare{Field: "attr.visible", Op: query.Eq, Value: query.Value{Str: "YES"}}, nil, 1},
			{"by an overflowed key", &query.Compare{Field: "attr.hidden", Op: query.Eq, Value: query.Value{Str: "secret"}}, nil, 0},
			{"overflowed key exists", &query.Exists{Field: "attr.hidden"}, nil, 0},
			{"overflowed resource key", &query.Compare{Field: "resource.rk", Op: query.Eq, Value: query.Int(1)}, nil, 0},
			{"free text in the overflow", nil, []string{"secret"}, 0},
		} {
			t.Run(c.name, func(t *testing.T) {
				res, err := s.Search(ctx, store.Request{Index: store.Spans, Filter: c.filter, Text: c.text})
				if err != nil {
					t.Fatal(err)
				}
				if res.Total != c.want || len(res.Spans) != c.want {
					t.Fatalf("Total %d, %d hits; want %d", res.Total, len(res.Spans), c.want)
				}
				if c.want == 1 {
					if got := res.Spans[0]; got.Overflow != sp.Overflow || !sameJSON(got, sp) {
						t.Errorf("hit differs from the document written:\n got %+v\nwant %+v", got, sp)
					}
				}
			})
		}
	})
	t.Run("LongValues", func(t *testing.T) {
		// A filterable string is indexed by its first query.MaxValueBytes bytes in both stores (Meilisearch's
		// facet limit), so a longer value is found by that prefix; a condition on a longer value is refused
		// by the query compiler (query's own tests).
		s := load(t)
		sp := overflowSpan(f)
		sp.Attr = map[string]any{"long": strings.Repeat("x", 600)}
		sp.Overflow = ""
		if err := s.Write(ctx, []document.Span{sp}, nil); err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			value string
			want  int
		}{{strings.Repeat("x", query.MaxValueBytes), 1}, {strings.Repeat("x", query.MaxValueBytes-1), 0}} {
			res, err := s.Search(ctx, store.Request{Index: store.Spans,
				Filter: &query.Compare{Field: "attr.long", Op: query.Eq, Value: query.Value{Str: c.value}}})
			if err != nil {
				t.Fatal(err)
			}
			if res.Total != c.want {
				t.Errorf("attr.long = %d x's: Total %d, want %d", len(c.value), res.Total, c.want)
			}
		}
	})
	t.Run("Fields", func(t *testing.T) {
		s := load(t)
		sp := overflowSpan(f)
		if err := s.Write(ctx, []document.Span{sp}, nil); err != nil {
			t.Fatal(err)
		}
		got, err := s.Fields(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"name", "trace_id", "attr.visible", "attr.tags", "events.attr.exception.type",
			"links.attr.link.kind", "resource.k8s.namespace.name"}
		for i := range f.Spans {
			for n := range f.Spans[i].AttributeFields() {
				want = append(want, n)
			}
		}
		for _, n := range want {
			if !slices.Contains(got, n) {
				t.Errorf("Fields lacks %q: %v", n, sorted(got))
			}
		}
		for _, n := range got {
			if n == "attr.hidden" || n == "resource.rk" || strings.HasPrefix(n, "_") {
				t.Errorf("Fields lists %q, which no document indexes", n)
			}
		}
	})
	t.Run("Facet", func(t *testing.T) {
		s := load(t)
		type fc = store.FacetCount
		f := func(v string, n int) fc { return fc{Value: v, Count: n} }
		lastHour := &query.Compare{Field: "start", Op: query.Ge, Value: query.Int(Now.Add(-time.Hour).UnixMicro())}
		for _, c := range []struct {
			name   string
			filter query.Expr
			field  string
			limit  int
			want   []fc
		}{
			{"edges of every trace", nil, "edges", 0, []fc{
				f("checkout>postgres", 5), f("frontend>checkout", 5), f("gateway>frontend", 5), f("checkout>inventory-service", 4),
				f("orders-api>service-b", 3), f("orders-api>topic:orders", 3), f("topic:orders>service-b", 3)}},
			{"edges in the last hour", lastHour, "edges", 0, []fc{
				f("checkout>postgres", 4), f("frontend>checkout", 4), f("gateway>frontend", 4), f("checkout>inventory-service", 3),
				f("orders-api>service-b", 3), f("orders-api>topic:orders", 3), f("topic:orders>service-b", 3)}},
			{"limit keeps the most frequent", lastHour, "edges", 4, []fc{
				f("checkout>postgres", 4), f("frontend>checkout", 4), f("gateway>frontend", 4), f("checkout>inventory-service", 3)}},
			{"no match", &query.Compare{Field: "root_service", Op: query.Eq, Value: query.Value{Str: "nope"}}, "edges", 0, nil},
			{"root services", nil, "root_service", 0, []fc{f("gateway", 5), f("orders-api", 3)}},
			{"services of slow traces", &query.Compare{Field: "duration", Op: query.Ge, Value: query.Int(time.Second.Microseconds())}, "services", 1,
				[]fc{f("orders-api", 2)}},
		} {
			t.Run(c.name, func(t *testing.T) {
				got, err := s.Facet(ctx, store.Traces, c.filter, c.field, c.limit)
				if err != nil {
					t.Fatal(err)
				}
				if len(got) != 0 || len(c.want) != 0 {
					if !slices.Equal(got, c.want) {
						t.Errorf("Facet(%s) = %v, want %v", c.field, got, c.want)
					}
				}
			})
		}
		for _, bad := range []struct {
			index store.Index
			field string
			limit int
		}{{store.Traces, "root_name", 0}, {store.Traces, "service", 0}, {store.Traces, "edges", store.MaxFacetValues + 1}, {store.Traces, "edges", -1}} {
			if _, err := s.Facet(ctx, bad.index, nil, bad.field, bad.limit); !errors.Is(err, store.ErrBadRequest) {
				t.Errorf("Facet(%s, %q, limit %d): err = %v, want ErrBadRequest", bad.index, bad.field, bad.limit, err)
			}
		}
	})
	t.Run("SpanFacet", func(t *testing.T) {
		s := load(t)
		for _, c := range SpanFacetCases {
			t.Run(c.Name, func(t *testing.T) {
				got, err := s.Facet(ctx, store.Spans, spanFilter(t, c.Query), c.Field, c.Limit)
				if err != nil {
					t.Fatal(err)
				}
				if (len(got) != 0 || len(c.Want) != 0) && !slices.Equal(got, c.Want) {
					t.Errorf("Facet(spans, %q, %s, %d) = %v, want %v", c.Query, c.Field, c.Limit, got, c.Want)
				}
			})
		}
		for _, field := range []string{"trace_id", "duration", "customer_id", "attr.", "attr.*", "resource.*", "edges", "root_service"} {
			if _, err := s.Facet(ctx, store.Spans, nil, field, 0); !errors.Is(err, store.ErrBadRequest) {
				t.Errorf("Facet(spans, %q): err = %v, want ErrBadRequest", field, err)
			}
		}
	})
	t.Run("SpanFacetList", func(t *testing.T) {
		// A list attribute counts each distinct element once per span; a scalar counts as a one-element list.
		s := load(t)
		var spans []document.Span
		for i, tags := range []any{[]any{"a", "b", "a"}, []any{"b"}, "b", []any{"c"}} {
			sp := overflowSpan(f)
			sp.SpanID = fmt.Sprintf("%016x", 0xf00+i)
			sp.ID, sp.Attr, sp.Overflow = sp.TraceID+"-"+sp.SpanID, map[string]any{"tags": tags}, ""
			spans = append(spans, sp)
		}
		if err := s.Write(ctx, spans, nil); err != nil {
			t.Fatal(err)
		}
		got, err := s.Facet(ctx, store.Spans, nil, "attr.tags", 0)
		if want := []store.FacetCount{{Value: "b", Count: 3}, {Value: "a", Count: 1}, {Value: "c", Count: 1}}; err != nil || !slices.Equal(got, want) {
			t.Errorf("Facet(attr.tags) = %v, %v; want %v", got, err, want)
		}
	})
	t.Run("FacetManyValues", func(t *testing.T) {
		// More distinct values than Meilisearch's default maxValuesPerFacet (100): all of them are counted.
		s := load(t)
		const n = 250
		var traces []document.Trace
		for i := range n {
			tr := f.Traces[0]
			tr.ID = fmt.Sprintf("many%04d", i)
			tr.TraceID = tr.ID
			tr.Edges = []string{fmt.Sprintf("svc-%04d>db", i), "many>db"}
			traces = append(traces, tr)
		}
		if err := s.Write(ctx, nil, traces); err != nil {
			t.Fatal(err)
		}
		many := &query.Compare{Field: "id", Op: query.Ne, Value: query.Value{Str: f.Traces[0].ID}}
		got, err := s.Facet(ctx, store.Traces, many, "edges", store.MaxFacetValues)
		if err != nil {
			t.Fatal(err)
		}
		// The n new edges, "many>db" and the fixture's other traces' 7 edges.
		if len(got) != n+1+7 || got[0] != (store.FacetCount{Value: "many>db", Count: n}) {
			t.Fatalf("Facet: %d values, first %v; want %d, first many>db (%d)", len(got), got[:min(len(got), 3)], n+8, n)
		}
		if got, err := s.Facet(ctx, store.Traces, many, "edges", 0); err != nil || len(got) != store.DefaultFacetLimit {
			t.Errorf("Facet with limit 0: %d values, %v; want %d", len(got), err, store.DefaultFacetLimit)
		}
	})
	t.Run("DeleteBefore", func(t *testing.T) {
		s := load(t)
		if err := s.DeleteBefore(ctx, Now.Add(-time.Hour), nil); err != nil {
			t.Fatal(err)
		}
		runCase(t, s, f, Case{Query: "trace_id=" + t5, Want: nil})
		runCase(t, s, f, Case{Query: "service=inventory-service", Want: []string{"t1.5", "t3.5", "t4.5"}})
		runCase(t, s, f, Case{Query: "trace.duration>=1s", Want: []string{"t6", "t7"}})
	})
	t.Run("DeleteBeforeFiltered", func(t *testing.T) {
		// Everything started before the cut, but only trace t5's documents match (a field of both indexes, as
		// tenant is): its spans and trace document go, the other traces stay whole.
		s := load(t)
		if err := s.DeleteBefore(ctx, Now.Add(time.Hour), &query.Compare{Field: "trace_id", Op: query.Eq, Value: query.Value{Str: t5}}); err != nil {
			t.Fatal(err)
		}
		runCase(t, s, f, Case{Query: "trace_id=" + t5, Want: nil})
		runCase(t, s, f, Case{Query: "trace.duration>=1s", Want: []string{"t6", "t7"}})
		runCase(t, s, f, Case{Query: "service=inventory-service", Want: []string{"t1.5", "t3.5", "t4.5"}})
	})
}

func runCase(t *testing.T, s store.Store, f *Fixture, c Case) {
	t.Helper()
	q, err := query.Compile(c.Query, Now)
	if err != nil {
		t.Fatalf("Compile(%q): %v", c.Query, err)
	}
	switch c.Target {
	case "spans":
		q.Target = query.SpanScope
	case "traces":
		q.Target = query.TraceScope
	}
	// Every plan must give the same answer: without business keys, and with the fixture's (customer_id, so
	// span conditions on it and on service narrow trace joins first).
	for _, keys := range [][]string{nil, {"customer_id"}} {
		res, err := querysvc.Execute(context.Background(), s, q, c.Page, keys)
		if err != nil {
			t.Fatalf("Execute(%q) with keys %v: %v", c.Query, keys, err)
		}
		checkResult(t, f, c, res, keys)
	}
}

// checkResult compares the hits and the total of res with the case's.
func checkResult(t *testing.T, f *Fixture, c Case, res store.Result, keys []string) {
	t.Helper()
	got := spanLabels(t, f, res)
	for _, tr := range res.Traces {
		got = append(got, f.Label(tr.ID))
		if !sameJSON(tr, f.trace(tr.ID)) {
			t.Errorf("hit %s differs from the document written:\n got %+v", f.Label(tr.ID), tr)
		}
	}
	if !c.Ordered {
		got, c.Want = sorted(got), sorted(c.Want)
	}
	if !slices.Equal(got, c.Want) {
		t.Errorf("keys %v: hits = %v, want %v", keys, got, c.Want)
	}
	want := c.Total
	if want == 0 {
		want = len(c.Want)
	}
	if res.Total != want {
		t.Errorf("%q with keys %v: Total = %d, want %d", c.Query, keys, res.Total, want)
	}
}

// spanLabels returns the labels of the span hits, failing t for any hit that differs from the document
// written.
func spanLabels(t *testing.T, f *Fixture, res store.Result) []string {
	t.Helper()
	var out []string
	for _, sp := range res.Spans {
		out = append(out, f.Label(sp.ID))
		if !sameJSON(sp, f.span(sp.ID)) {
			t.Errorf("hit %s differs from the document written:\n got %+v", f.Label(sp.ID), sp)
		}
	}
	return out
}

func check(t *testing.T, got, want []string, ordered bool) {
	t.Helper()
	if !ordered {
		got, want = sorted(got), sorted(want)
	}
	if !slices.Equal(got, want) {
		t.Errorf("hits = %v, want %v", got, want)
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// sameJSON reports whether a and b encode to the same JSON (stores return numbers of attribute maps as
// float64, the fixture holds ints).
func sameJSON(a, b any) bool {
	ja, errA := json.Marshal(a)
	jb, errB := json.Marshal(b)
	return errA == nil && errB == nil && string(ja) == string(jb)
}

// overflowSpan is a span with attributes of every kind, and two that overflowed the cap on attribute keys.
func overflowSpan(f *Fixture) document.Span {
	sp := f.Spans[0]
	sp.SpanID = "00000000000000ff"
	sp.ID = sp.TraceID + "-" + sp.SpanID
	sp.Attr = map[string]any{"visible": "yes", "tags": []any{"a", "b"}}
	sp.Resource = map[string]any{"service.name": sp.Service, "k8s.namespace.name": "shop"}
	sp.Events = []document.Event{{Name: "exception", Time: sp.Start, Attr: map[string]any{"exception.type": "EOF"}}}
	sp.Links = []document.Link{{TraceID: TraceID(2), SpanID: "0000000000000001", Attr: map[string]any{"link.kind": "follows"}}}
	sp.Overflow = `{"attr.hidden":"secret","resource.rk":1}`
	return sp
}
