package meili

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/indexer/document"
	"github.com/meshtrace/meshtrace/indexer/store/storetest"
)

// BenchmarkBatchBuild measures what the writer spends on the CPU per batch of 5,000 generated spans, side by
// side: "ndjson" is the store's path (id check and NDJSON encoding), "json-array" what handing the slice to
// the client's AddDocuments would cost (one json.Marshal), "queue" the copy of encoded lines into a batch,
// and "ndjson+gzip" the extra cost of compressing the payload (not done by default). Documents per second
// against a real Meilisearch depend on the server's indexing and are not measured here.
func BenchmarkBatchBuild(b *testing.B) {
	var spans []document.Span
	err := storetest.Generate(5000, 1, func(sp []document.Span, _ document.Trace) error {
		spans = append(spans, sp...)
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	spans = spans[:5000]
	encoded, err := encodeSpans(spans)
	if err != nil {
		b.Fatal(err)
	}
	report := func(b *testing.B) {
		b.ReportMetric(float64(len(spans)*b.N)/b.Elapsed().Seconds(), "docs/s")
		b.ReportMetric(float64(len(encoded.buf))/float64(len(spans)), "bytes/doc")
	}
	b.Run("ndjson", func(b *testing.B) {
		for b.Loop() {
			if _, err := encodeSpans(spans); err != nil {
				b.Fatal(err)
			}
		}
		report(b)
	})
	b.Run("json-array", func(b *testing.B) {
		for b.Loop() {
			if _, err := json.Marshal(spans); err != nil {
				b.Fatal(err)
			}
		}
		report(b)
	})
	b.Run("queue", func(b *testing.B) {
		bt := &batcher{s: &Store{cfg: Config{MaxBatchDocs: 50_000, Linger: time.Hour}}, maxBytes: 64 << 20,
			wake: make(chan struct{}, 1)}
		for b.Loop() {
			if _, err := bt.add(encoded); err != nil {
				b.Fatal(err)
			}
			bt.open, bt.sealed = nil, nil
		}
		report(b)
	})
	b.Run("ndjson+gzip", func(b *testing.B) {
		var out bytes.Buffer
		for b.Loop() {
			l, err := encodeSpans(spans)
			if err != nil {
				b.Fatal(err)
			}
			out.Reset()
			zw, _ := gzip.NewWriterLevel(&out, gzip.BestSpeed)
			_, _ = zw.Write(l.buf)
			_ = zw.Close()
		}
		report(b)
		b.ReportMetric(float64(out.Len())/float64(len(spans)), "gzip-bytes/doc")
	})
}
