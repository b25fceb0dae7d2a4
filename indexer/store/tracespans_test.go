package store_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/meshtrace/meshtrace/indexer/document"
	"github.com/meshtrace/meshtrace/indexer/store"
	"github.com/meshtrace/meshtrace/indexer/store/embedded"
)

func openStore(t *testing.T) store.Store {
	t.Helper()
	st, err := embedded.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// makeSpans returns n spans of one trace, 10 us apart.
func makeSpans(trace, n int, base int64) []document.Span {
	traceID := fmt.Sprintf("%032x", 0x1000+trace)
	out := make([]document.Span, n)
	for i := range out {
		spanID := fmt.Sprintf("%016x", trace*100000+i+1)
		start := base + int64(i)*10
		out[i] = document.Span{ID: traceID + "-" + spanID, TraceID: traceID, SpanID: spanID, Name: "op", Service: "svc",
			Kind: "server", StatusCode: "unset", Start: start, End: start + 5, Duration: 5}
	}
	return out
}

func TestTraceSpansPagesLargeTraces(t *testing.T) {
	st := openStore(t)
	spans := makeSpans(3, 2*store.MaxLimit+17, 1_700_000_000_000_000)
	if err := st.Write(context.Background(), spans, nil); err != nil {
		t.Fatal(err)
	}
	got, err := store.TraceSpans(context.Background(), st, spans[0].TraceID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(spans) {
		t.Fatalf("TraceSpans returned %d spans, want %d", len(got), len(spans))
	}
	for i := range got {
		if got[i].ID != spans[i].ID {
			t.Fatalf("span %d is %s, want %s (start order)", i, got[i].ID, spans[i].ID)
		}
	}
}
