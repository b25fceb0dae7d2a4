package pipeline

import (
	"context"
	"slices"

	"github.com/meshtrace/meshtrace/indexer/document"
	"github.com/meshtrace/meshtrace/indexer/query"
	"github.com/meshtrace/meshtrace/indexer/store"
	"github.com/meshtrace/meshtrace/indexer/tenant"
)

// storeLoader reads stored documents back for the rollup (rollup.Loader). It reads the store directly, not
// through querysvc.Service: the write path must see every document as stored, without the read side's
// tenancy and caching.
type storeLoader struct{ st store.Store }

// GetTraces implements rollup.Loader.
func (l storeLoader) GetTraces(ctx context.Context, ids []string) ([]document.Trace, error) {
	return l.st.GetTraces(ctx, ids)
}

// TraceSpans implements rollup.Loader with store.TraceSpans, keeping the one tenant's spans. A tenant is
// selected in the search (an equality, cheap); the empty tenant's spans, which have no tenant field, are
// picked from the trace's spans here, since "NOT tenant EXISTS" would cost a pass over every segment's rows.
func (l storeLoader) TraceSpans(ctx context.Context, tn, traceID string) ([]document.Span, error) {
	var within query.Expr
	if tn != "" {
		within = tenant.Only(tn)
	}
	spans, err := store.TraceSpans(ctx, l.st, traceID, within)
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(spans, func(s document.Span) bool { return s.Tenant != tn }), nil
}
