// Package tracefetch reads whole traces back from a store.Store: the trace document and every span, paging
// past the store's per-search hit limit.
package tracefetch

import (
	"context"
	"fmt"

	"github.com/meshtrace/meshtrace/indexer/document"
	"github.com/meshtrace/meshtrace/indexer/query"
	"github.com/meshtrace/meshtrace/indexer/store"
)

// Spans returns every stored span of a trace in start order. Searches return at most store.MaxLimit
// hits, so larger traces are read in pages keyed on the start time (start >= the last start seen).
func Spans(ctx context.Context, st store.Store, traceID string) ([]document.Span, error) {
	byTrace := &query.Compare{Field: "trace_id", Op: query.Eq, Value: query.Value{Str: traceID}}
	sort := []query.Sort{{Field: query.Resolve("start")}} // ties: id ascending (store.Request)
	var out []document.Span
	seen := map[string]bool{}
	var filter query.Expr = byTrace
	for {
		res, err := st.Search(ctx, store.Request{Index: store.Spans, Filter: filter, Sort: sort, Limit: store.MaxLimit})
		if err != nil {
			return nil, err
		}
		for _, s := range res.Spans {
			if !seen[s.ID] {
				seen[s.ID] = true
				out = append(out, s)
			}
		}
		if len(res.Spans) < store.MaxLimit {
			return out, nil
		}
		first, last := res.Spans[0].Start, res.Spans[len(res.Spans)-1].Start
		if first == last {
			return nil, fmt.Errorf("trace %s has more than %d spans starting at the same microsecond", traceID, store.MaxLimit)
		}
		filter = query.Conjoin(byTrace, &query.Compare{Field: "start", Op: query.Ge, Value: query.Int(last)})
	}
}

// Trace returns the trace document and the spans of one trace; found is false when the store has neither.
func Trace(ctx context.Context, st store.Store, traceID string) (doc document.Trace, spans []document.Span, found bool, err error) {
	traces, err := st.GetTraces(ctx, []string{traceID})
	if err != nil {
		return doc, nil, false, err
	}
	if spans, err = Spans(ctx, st, traceID); err != nil {
		return doc, nil, false, err
	}
	if len(traces) > 0 {
		doc = traces[0]
	}
	return doc, spans, len(traces) > 0 || len(spans) > 0, nil
}
