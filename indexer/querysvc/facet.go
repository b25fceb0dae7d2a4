package querysvc

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/meshtrace/meshtrace/indexer/query"
	"github.com/meshtrace/meshtrace/indexer/store"
)

// The lists and counts of the read APIs: aggregations of store.Store.Facet, which counts values over every
// matching document without reading them, so a services list costs one facet search however many spans the
// store holds. Each answer has at most store.MaxFacetValues values, the most frequent; an answer that may
// have left values out says so (truncated), and its caller logs or marks it.

// Window bounds the start time of the spans a list counts; a zero bound is open, the zero Window counts
// every span.
type Window struct {
	Since, Until time.Time
}

// filter is the window as conditions on "start", as a query's window is (window).
func (w Window) filter() query.Expr {
	var q query.Query
	if !w.Since.IsZero() {
		q.Since = w.Since.UnixMicro()
	}
	if !w.Until.IsZero() {
		q.Until = w.Until.UnixMicro()
	}
	return window(&q)
}

// Operation is an operation (span name) of a service, with the kind of a span that carries it.
type Operation struct {
	Name     string
	SpanKind string
}

// OperationQuery selects the operations Operations lists; an empty field matches any value.
type OperationQuery struct {
	Service  string
	SpanKind string
	Window   Window // the spans counted; the zero Window counts every span
}

// Services returns the names of the services that have spans starting in w, sorted (jaeger-query's
// GetServices): one facet of the spans' service field. When the spans hold more than
// store.MaxFacetValues services, only the store.MaxFacetValues with the most spans are listed and truncated
// is true (it is also true when there are exactly that many: a store cannot tell more from as many). The
// names are never nil.
func (s *Service) Services(ctx context.Context, w Window) (names []string, truncated bool, err error) {
	counts, truncated, err := s.facet(ctx, store.Spans, w.filter(), "service", store.MaxFacetValues)
	if err != nil {
		return nil, false, err
	}
	names = make([]string, 0, len(counts))
	for _, c := range counts {
		if c.Value != "" {
			names = append(names, c.Value)
		}
	}
	slices.Sort(names)
	return names, truncated, nil
}

// Operations returns the operations of the spans matching oq: one per distinct (span name, span kind), so
// an operation carried by server and client spans is listed twice, sorted by name then kind
// (jaeger-query's GetOperations). It counts the span kinds of the matching spans (unless oq.SpanKind
// chooses one), then the names of each kind: one facet search per kind, plus one. Past store.MaxFacetValues
// names of one kind, only the most frequent are listed and truncated is true, as in Services. The result is
// never nil.
func (s *Service) Operations(ctx context.Context, oq OperationQuery) (ops []Operation, truncated bool, err error) {
	filter := oq.Window.filter()
	if oq.Service != "" {
		filter = query.Conjoin(filter, &query.Compare{Field: "service", Op: query.Eq, Value: query.Value{Str: oq.Service}})
	}
	kinds := []string{oq.SpanKind}
	if oq.SpanKind == "" {
		counts, cut, err := s.facet(ctx, store.Spans, filter, "kind", store.MaxFacetValues)
		if err != nil {
			return nil, false, err
		}
		truncated = cut
		kinds = kinds[:0]
		for _, c := range counts {
			kinds = append(kinds, c.Value)
		}
	}
	ops = []Operation{}
	for _, kind := range kinds {
		f := query.Conjoin(filter, &query.Compare{Field: "kind", Op: query.Eq, Value: query.Value{Str: kind}})
		counts, cut, err := s.facet(ctx, store.Spans, f, "name", store.MaxFacetValues)
		if err != nil {
			return nil, false, err
		}
		truncated = truncated || cut
		for _, c := range counts {
			ops = append(ops, Operation{Name: c.Value, SpanKind: kind})
		}
	}
	slices.SortFunc(ops, func(a, b Operation) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.SpanKind, b.SpanKind))
	})
	return slices.Compact(ops), truncated, nil
}

// FacetResult is the answer of Facet.
type FacetResult struct {
	// Field is the document field counted: the name asked for as query.Resolve maps it ("customer_id" ->
	// "attr.customer_id", "trace.service" -> "services").
	Field string
	// Values are the values of Field, most frequent first, ties by value ascending; never nil.
	Values []store.FacetCount
	// Truncated means more distinct values than Values holds may exist (the limit was reached).
	Truncated bool
	// Partial means the counts cover only part of the matching documents: a join of q was cut at
	// store.MaxLimit (as store.Result.Partial), or q's free text matched more than store.MaxLimit spans, of
	// which the most recent store.MaxLimit are counted. Counts are then lower bounds.
	Partial bool
}

// Facet counts the values of field over the documents q matches ("the top customer_id values among the
// failing spans of the last hour": q = error=true since=1h, field customer_id), at most limit of them (0:
// store.DefaultFacetLimit; at most store.MaxFacetValues). field is written as in a query and resolved with
// query.Resolve; its scope chooses the documents counted, whatever q.Target says: a span field counts spans,
// a trace field ("trace.service", "trace.root_service") traces. It must be countable (store.CheckFacet):
// the fixed fields of store.FacetFields and span attributes ("customer_id", "attr.k", "resource.k"). q is
// joined across scopes as Execute joins it, its sort keys ignored; the counts come from one store.Facet
// over the joined documents, never from reading them, except that free text on spans is first searched for
// (the most recent store.MaxLimit matching spans, then counted by id). When more distinct values than
// limit exist, the most frequent limit are returned and Truncated is set; at store.MaxFacetValues a store
// cannot tell more values from as many, and Truncated is set when that many are returned. An error wraps
// store.ErrBadRequest for a field that cannot be counted, a bad limit or a query the store cannot run.
func (s *Service) Facet(ctx context.Context, q *query.Query, field string, limit int) (FacetResult, error) {
	f := query.Resolve(field)
	index := store.Spans
	if f.Scope == query.TraceScope {
		index = store.Traces
	}
	limit, err := store.CheckFacet(index, f.Path, limit)
	if err != nil {
		return FacetResult{}, fmt.Errorf("field %q: %w", field, err)
	}
	rd, _, err := s.reader(ctx)
	if err != nil {
		return FacetResult{}, err
	}
	out := FacetResult{Field: f.Path, Values: []store.FacetCount{}}
	tq := *q
	tq.Target, tq.Sort = f.Scope, nil
	pl, err := planQuery(ctx, rd, &tq, Page{}, s.keys)
	if err != nil || pl.empty {
		out.Partial = pl.partial
		return out, err
	}
	filter := pl.main.Filter
	if len(pl.main.Text) > 0 {
		res, err := rd.Search(ctx, store.Request{Index: store.Spans, Filter: filter, Text: pl.main.Text, Limit: store.MaxLimit, Fields: []string{"id"}})
		if err != nil {
			return FacetResult{}, err
		}
		pl.partial = pl.partial || res.Partial || res.Total > len(res.Spans)
		if len(res.Spans) == 0 {
			out.Partial = pl.partial
			return out, nil
		}
		ids := make([]query.Value, len(res.Spans))
		for i, sp := range res.Spans {
			ids[i] = query.Value{Str: sp.ID}
		}
		filter = &query.In{Field: "id", Values: ids}
	}
	counts, truncated, err := s.facet(ctx, index, filter, f.Path, limit)
	if err != nil {
		return FacetResult{}, err
	}
	out.Values = append(out.Values, counts...)
	out.Truncated, out.Partial = truncated, pl.partial
	return out, nil
}

// facet counts field over the documents of index matching filter, at most limit values (1 to
// store.MaxFacetValues). It asks the store for one value more, so truncated reports that more distinct
// values exist; at store.MaxFacetValues it reports that the store returned that many.
func (s *Service) facet(ctx context.Context, index store.Index, filter query.Expr, field string, limit int) ([]store.FacetCount, bool, error) {
	rd, _, err := s.reader(ctx)
	if err != nil {
		return nil, false, err
	}
	counts, err := rd.Facet(ctx, index, filter, field, min(limit+1, store.MaxFacetValues))
	if err != nil {
		return nil, false, err
	}
	if len(counts) > limit {
		return counts[:limit], true, nil
	}
	return counts, len(counts) == store.MaxFacetValues, nil
}
