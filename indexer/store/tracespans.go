package store

import (
	"context"
	"fmt"

	"github.com/meshtrace/meshtrace/indexer/document"
	"github.com/meshtrace/meshtrace/indexer/query"
)

// Searcher is the part of a Store that TraceSpans reads with.
type Searcher interface {
	Search(ctx context.Context, r Request) (Result, error)
}

// TraceSpans returns every stored span of a trace in start order, reading s with Search. Searches return
// at most MaxLimit hits, so larger traces are read in pages keyed on the start time (start >= the last start
// seen); it fails when more than MaxLimit spans of the trace start at the same microsecond.
//
// within, when not nil, is a further condition on the spans: the rollup's one tenant, querysvc's scope.
//
// It serves both sides: the rollup reads a trace's spans back with it when recomputing a trace document (the
// write path, which must see the store as it is), and querysvc.Service builds its trace fetches on it.
func TraceSpans(ctx context.Context, s Searcher, traceID string, within query.Expr) ([]document.Span, error) {
	byTrace := query.Conjoin(&query.Compare{Field: "trace_id", Op: query.Eq, Value: query.Value{Str: traceID}}, within)
	sort := []query.Sort{{Field: query.Resolve("start")}} // ties: id ascending (Request)
	var out []document.Span
	seen := map[string]bool{}
	var filter query.Expr = byTrace
	for {
		res, err := s.Search(ctx, Request{Index: Spans, Filter: filter, Sort: sort, Limit: MaxLimit})
		if err != nil {
			return nil, err
		}
		for _, sp := range res.Spans {
			if !seen[sp.ID] {
				seen[sp.ID] = true
				out = append(out, sp)
			}
		}
		if len(res.Spans) < MaxLimit {
			return out, nil
		}
		first, last := res.Spans[0].Start, res.Spans[len(res.Spans)-1].Start
		if first == last {
			return nil, fmt.Errorf("trace %s has more than %d spans starting at the same microsecond", traceID, MaxLimit)
		}
		filter = query.Conjoin(byTrace, &query.Compare{Field: "start", Op: query.Ge, Value: query.Int(last)})
	}
}
