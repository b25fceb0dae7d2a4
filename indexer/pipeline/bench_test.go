package pipeline

import (
	"context"
	"sync"
	"testing"

	"github.com/meshtrace/meshtrace/indexer/document"
	"github.com/meshtrace/meshtrace/indexer/store/embedded"
	"github.com/meshtrace/meshtrace/indexer/store/storetest"
)

// BenchmarkIngestEmbedded measures the pipeline end to end into the embedded store: 4 concurrent clients log
// records of 250 spans (whole traces, as the filter batches them); the clock stops when everything logged is
// committed, so spans/s includes the log, batching, the rollup and the store's durable writes.
func BenchmarkIngestEmbedded(b *testing.B) {
	const total, request = 4000, 250
	var spans []document.Span
	if err := storetest.Generate(total, 1, func(s []document.Span, _ document.Trace) error {
		spans = append(spans, s...)
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	var records [][]byte
	for i := 0; i < len(spans); i += request {
		records = append(records, encode(b, spans[i:min(i+request, len(spans))]))
	}
	for b.Loop() {
		b.StopTimer()
		st, err := embedded.Open(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		w := openWAL(b, b.TempDir())
		p, err := New(st, w, Config{Shards: 2, Logger: quiet})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		var wg sync.WaitGroup
		for c := range 4 {
			wg.Go(func() {
				for i := c; i < len(records); i += 4 {
					if err := w.Append(context.Background(), records[i]); err != nil {
						b.Error(err)
					}
				}
			})
		}
		wg.Wait()
		waitCommitted(b, w)
		b.StopTimer()
		p.Close(context.Background())
		w.Close()
		st.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(b.N*total)/b.Elapsed().Seconds(), "spans/s")
}
