package pipeline

import (
	"context"

	"github.com/meshtrace/meshtrace/indexer/document"
	"github.com/meshtrace/meshtrace/indexer/store"
	"github.com/meshtrace/meshtrace/indexer/tracefetch"
)

// storeLoader reads stored documents back for the rollup (rollup.Loader).
type storeLoader struct{ st store.Store }

// GetTraces implements rollup.Loader.
func (l storeLoader) GetTraces(ctx context.Context, ids []string) ([]document.Trace, error) {
	return l.st.GetTraces(ctx, ids)
}

// TraceSpans implements rollup.Loader.
func (l storeLoader) TraceSpans(ctx context.Context, traceID string) ([]document.Span, error) {
	return tracefetch.Spans(ctx, l.st, traceID)
}
