package querysvc

import (
	"context"
	"fmt"
	"time"

	"github.com/meshtrace/meshtrace/indexer/document"
	"github.com/meshtrace/meshtrace/indexer/query"
	"github.com/meshtrace/meshtrace/indexer/store"
)

// Dependency is one edge of the service graph: calls from Parent to Child (service names, or "topic:<name>"
// for a messaging destination, see package rollup).
type Dependency struct {
	Parent string
	Child  string
	// CallCount is the number of traces that started in the window and hold the edge, not the number of
	// calls (Jaeger's meaning): a trace calling checkout from frontend ten times counts once. It is what a
	// trace document records (document.Trace.Edges), and it ranks edges the same way for the service graph.
	CallCount int
}

// Dependencies returns the service graph of the traces that started in [since, until]: one Dependency per
// edge, most traces first (at most store.MaxFacetValues edges). It reads one aggregation of the trace
// documents' edges (store.Store.Facet), never the spans.
func (s *Service) Dependencies(ctx context.Context, since, until time.Time) ([]Dependency, error) {
	if until.Before(since) {
		return nil, fmt.Errorf("%w: the window ends (%s) before it starts (%s)", store.ErrBadRequest, until, since)
	}
	rd, _, err := s.reader(ctx)
	if err != nil {
		return nil, err
	}
	filter := &query.And{Terms: []query.Expr{
		&query.Compare{Field: "start", Op: query.Ge, Value: query.Int(since.UnixMicro())},
		&query.Compare{Field: "start", Op: query.Le, Value: query.Int(until.UnixMicro())},
	}}
	counts, err := rd.Facet(ctx, store.Traces, filter, "edges", store.MaxFacetValues)
	if err != nil {
		return nil, err
	}
	out := make([]Dependency, 0, len(counts))
	for _, c := range counts {
		if parent, child, ok := document.ParseEdge(c.Value); ok {
			out = append(out, Dependency{Parent: parent, Child: child, CallCount: c.Count})
		}
	}
	return out, nil
}

// QueryDependencies returns the service graph of the traces q matches, as Dependencies does for a time
// window: "what did customer 123's requests touch". q's time window (since=, until=) bounds the traces' start
// like the rest of its trace conditions; q.Target is ignored. Trace conditions filter the facet directly.
// Span conditions and free text are joined as Execute joins them: the spans are searched first and the facet
// counts only the traces holding a match, at most the most recent store.MaxLimit of them; partial reports
// that the join reached that bound (or that the store answered partially): counts are then lower bounds.
func (s *Service) QueryDependencies(ctx context.Context, q *query.Query) (deps []Dependency, partial bool, err error) {
	rd, _, err := s.reader(ctx)
	if err != nil {
		return nil, false, err
	}
	filter := query.Conjoin(q.Trace, window(q))
	if q.Span != nil || len(q.Text) > 0 {
		join := store.Request{Index: store.Spans, Filter: query.Conjoin(q.Span, window(q)), Text: q.Text, Distinct: "trace_id",
			Limit: store.MaxLimit, Fields: []string{"trace_id"}}
		ids, total, cut, err := traceIDs(ctx, rd, join)
		if err != nil {
			return nil, false, err
		}
		if len(ids) == 0 {
			return []Dependency{}, cut, nil
		}
		// A store may count at most store.MaxLimit distinct traces (Meilisearch's maxTotalHits), so reaching
		// the bound counts as cut.
		partial = cut || total > len(ids) || len(ids) >= store.MaxLimit
		filter = query.Conjoin(filter, &query.In{Field: "trace_id", Values: ids})
	}
	counts, err := rd.Facet(ctx, store.Traces, filter, "edges", store.MaxFacetValues)
	if err != nil {
		return nil, false, err
	}
	deps = make([]Dependency, 0, len(counts))
	for _, c := range counts {
		if parent, child, ok := document.ParseEdge(c.Value); ok {
			deps = append(deps, Dependency{Parent: parent, Child: child, CallCount: c.Count})
		}
	}
	return deps, partial, nil
}
