package pipeline

import (
	"context"

	"github.com/meshtrace/meshtrace/indexer/document"
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

// TraceSpans implements rollup.Loader with store.TraceSpans, restricted to the one tenant.
func (l storeLoader) TraceSpans(ctx context.Context, tn, traceID string) ([]document.Span, error) {
	return store.TraceSpans(ctx, l.st, traceID, tenant.Only(tn))
}
