package pipeline

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/indexer/document"
	"github.com/meshtrace/meshtrace/indexer/store/embedded"
	"github.com/meshtrace/meshtrace/indexer/store/storetest"
)

// BenchmarkIngestEmbedded measures the pipeline end to end into the embedded store: 4 concurrent clients
// send requests of 250 spans (whole traces, as the filter batches them) and wait until each is written;
// spans/s includes batching, the rollup and the store's durable writes.
func BenchmarkIngestEmbedded(b *testing.B) {
	const total, request = 4000, 250
	var spans []document.Span
	if err := storetest.Generate(total, 1, func(s []document.Span, _ document.Trace) error {
		spans = append(spans, s...)
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		b.StopTimer()
		st, err := embedded.Open(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		p := New(st, Config{Shards: 2, BatchTimeout: 50 * time.Millisecond, Logger: quiet})
		b.StartTimer()
		var wg sync.WaitGroup
		for c := range 4 {
			wg.Go(func() {
				for i := c * request; i < len(spans); i += 4 * request {
					if err := p.Consume(context.Background(), spans[i:min(i+request, len(spans))]); err != nil {
						b.Error(err)
					}
				}
			})
		}
		wg.Wait()
		b.StopTimer()
		if err := p.Close(context.Background()); err != nil {
			b.Fatal(err)
		}
		st.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(b.N*total)/b.Elapsed().Seconds(), "spans/s")
}
