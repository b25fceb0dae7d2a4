package pipeline

import (
	"context"
	"fmt"
	"strconv"

	"github.com/meshtrace/meshtrace/indexer/document"
	"github.com/meshtrace/meshtrace/indexer/query"
	"github.com/meshtrace/meshtrace/indexer/store"
)

// storeLoader reads stored documents back for the rollup (rollup.Loader).
type storeLoader struct{ st store.Store }

func (l storeLoader) GetTraces(ctx context.Context, ids []string) ([]document.Trace, error) {
	return l.st.GetTraces(ctx, ids)
}

func (l storeLoader) TraceSpans(ctx context.Context, traceID string) ([]document.Span, error) {
	return TraceSpans(ctx, l.st, traceID)
}

// TraceSpans returns every stored span of a trace in start order. Searches return at most store.MaxLimit
// hits, so larger traces are read in pages keyed on the start time (start >= the last start seen).
func TraceSpans(ctx context.Context, st store.Store, traceID string) ([]document.Span, error) {
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
		from := query.Value{Str: strconv.FormatInt(last, 10), Num: float64(last), IsNum: true}
		filter = &query.And{Terms: []query.Expr{byTrace, &query.Compare{Field: "start", Op: query.Ge, Value: from}}}
	}
}
