package pipeline

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshtrace/meshtrace/indexer/document"
	"github.com/meshtrace/meshtrace/indexer/fieldcap"
	"github.com/meshtrace/meshtrace/indexer/query"
	"github.com/meshtrace/meshtrace/indexer/receiver"
	"github.com/meshtrace/meshtrace/indexer/rollup"
	"github.com/meshtrace/meshtrace/indexer/store"
	"github.com/meshtrace/meshtrace/indexer/store/embedded"
	"github.com/meshtrace/meshtrace/indexer/store/storetest"
	"github.com/meshtrace/meshtrace/indexer/wal"
	"github.com/meshtrace/meshtrace/testenv/ingestbench"
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

// discard is a store that takes every write and keeps nothing: with it an ingest benchmark measures everything
// before the store. It holds no traces, so the rollup never loads any.
type discard struct{ spans atomic.Int64 }

func (d *discard) Write(_ context.Context, spans []document.Span, _ []document.Trace) error {
	d.spans.Add(int64(len(spans)))
	return nil
}
func (*discard) GetTraces(context.Context, []string) ([]document.Trace, error) { return nil, nil }
func (*discard) Search(context.Context, store.Request) (store.Result, error) {
	return store.Result{}, nil
}
func (*discard) DeleteBefore(context.Context, time.Time, query.Expr) error { return nil }
func (*discard) Fields(context.Context) ([]string, error)                  { return nil, nil }
func (*discard) Facet(context.Context, store.Index, query.Expr, string, int) ([]store.FacetCount, error) {
	return nil, nil
}
func (*discard) Close() error { return nil }

// preStoreBodies are the requests of BenchmarkPreStore: filter-shaped OTLP/HTTP protobuf exports of
// preStoreBatch spans (the bench-ingest load's default), generated once.
var preStoreBodies = sync.OnceValues(func() ([][]byte, error) {
	return ingestbench.Bodies(preStoreRequests, preStoreBatch, 1, time.Now())
})

const (
	preStoreRequests  = 120
	preStoreBatch     = 500
	preStoreExporters = 8
)

// BenchmarkPreStore measures the CPU every span costs before the store, as `indexer serve` runs it: 8 exporters
// POST filter-shaped OTLP/HTTP protobuf requests of 500 spans over loopback HTTP to the receiver, which
// validates them and appends them to the write-ahead log (fsynced, group-committed); the pipeline reads,
// decodes, caps attribute keys, rolls up and writes into a store that discards everything, and commits the log.
// Each iteration starts a fresh log and pipeline and ends once every span is written and committed.
//
// cpu-us/span is the process's CPU time (user and system, every thread, GC included) over the timed part,
// per span: on a shared machine it is steadier than wall time, and 2 cores at 30,000 spans/s leave 66 us per
// span for everything, store included. The HTTP client's share is in it too; the "client" sub-benchmark
// measures that alone (the same requests answered without being read further) to subtract. "embedded" runs
// the same path into the embedded store, for the whole cost of a span.
func BenchmarkPreStore(b *testing.B) {
	bodies, err := preStoreBodies()
	if err != nil {
		b.Fatal(err)
	}
	b.Run("serve", func(b *testing.B) {
		benchServe(b, bodies, func(testing.TB) store.Store { return &discard{} })
	})
	b.Run("embedded", func(b *testing.B) {
		benchServe(b, bodies, func(b testing.TB) store.Store {
			st, err := embedded.Open(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			return st
		})
	})
	b.Run("client", func(b *testing.B) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
		}))
		defer srv.Close()
		var cpu time.Duration
		var mallocs, allocated uint64
		for b.Loop() {
			cpu0, m0, b0 := cpuTime(b), mallocCount(), allocBytes()
			post(b, srv.URL+receiver.TracesPath, bodies)
			cpu += cpuTime(b) - cpu0
			mallocs += mallocCount() - m0
			allocated += allocBytes() - b0
		}
		reportPerSpan(b, preStoreRequests*preStoreBatch, cpu, mallocs, allocated)
	})
}

// benchServe is BenchmarkPreStore's run of receiver, log and pipeline into the store open returns, fresh for
// each iteration.
func benchServe(b *testing.B, bodies [][]byte, open func(testing.TB) store.Store) {
	const total = preStoreRequests * preStoreBatch
	var cpu time.Duration
	var mallocs, allocated uint64
	for b.Loop() {
		b.StopTimer()
		reg := prometheus.NewRegistry()
		w, err := wal.Open(wal.Config{Dir: b.TempDir(), Logger: quiet})
		if err != nil {
			b.Fatal(err)
		}
		st := open(b)
		p, err := New(st, w, Config{BatchSize: embedded.BatchSize, Logger: quiet, Registerer: reg,
			Fields: fieldcap.New(fieldcap.DefaultCap, nil, fieldcap.WithKeys(rollup.DefaultKeys...))})
		if err != nil {
			b.Fatal(err)
		}
		recv, err := receiver.New(w, receiver.Config{Logger: quiet, Registerer: reg})
		if err != nil {
			b.Fatal(err)
		}
		srv := httptest.NewServer(recv.HTTPServer().Handler)
		cpu0, m0, b0 := cpuTime(b), mallocCount(), allocBytes()
		b.StartTimer()
		post(b, srv.URL+receiver.TracesPath, bodies)
		for p.Stats().Written < total || w.Committed() != w.Stats().Durable {
			time.Sleep(time.Millisecond)
		}
		b.StopTimer()
		cpu += cpuTime(b) - cpu0
		mallocs += mallocCount() - m0
		allocated += allocBytes() - b0
		srv.Close()
		p.Close(context.Background())
		w.Close()
		st.Close()
		b.StartTimer()
	}
	reportPerSpan(b, total, cpu, mallocs, allocated)
}

// post sends every body from preStoreExporters concurrent exporters and fails unless each is answered 200.
func post(b *testing.B, url string, bodies [][]byte) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: preStoreExporters, DisableCompression: true}}
	defer client.CloseIdleConnections()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range preStoreExporters {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(len(bodies)); i = next.Add(1) - 1 {
				resp, err := client.Post(url, "application/x-protobuf", bytes.NewReader(bodies[i]))
				if err != nil {
					b.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Errorf("request %d answered %s", i, resp.Status)
					return
				}
			}
		})
	}
	wg.Wait()
}

// reportPerSpan reports spans/s of wall time and, per span, the CPU time and the heap allocations (count and
// bytes).
func reportPerSpan(b *testing.B, total int, cpu time.Duration, mallocs, allocated uint64) {
	spans := float64(b.N * total)
	b.ReportMetric(spans/b.Elapsed().Seconds(), "spans/s")
	b.ReportMetric(float64(cpu.Microseconds())/spans, "cpu-us/span")
	b.ReportMetric(float64(mallocs)/spans, "allocs/span")
	b.ReportMetric(float64(allocated)/spans, "B/span")
}

// cpuTime is the CPU time used by the process so far (user and system, all threads).
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// mallocCount is the number of heap allocations the process has made so far.
func mallocCount() uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.Mallocs
}

// allocBytes is the number of heap bytes the process has allocated so far.
func allocBytes() uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.TotalAlloc
}
