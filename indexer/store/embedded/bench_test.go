package embedded

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/indexer/document"
	"github.com/meshtrace/meshtrace/indexer/query"
	"github.com/meshtrace/meshtrace/indexer/querysvc"
	"github.com/meshtrace/meshtrace/indexer/rollup"
	"github.com/meshtrace/meshtrace/indexer/store"
	"github.com/meshtrace/meshtrace/indexer/store/storetest"
	"github.com/meshtrace/meshtrace/indexer/tenant"
)

// BenchmarkWrite measures ingest: span documents per second, in batches of 5,000 (plus their traces).
func BenchmarkWrite(b *testing.B) {
	dir := b.TempDir()
	s, err := Open(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	var spans []document.Span
	var traces []document.Trace
	err = storetest.Generate(5000, 1, func(sp []document.Span, tr document.Trace) error {
		spans, traces = append(spans, sp...), append(traces, tr)
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	cpu0 := cpuTime(b)
	for i := 0; b.Loop(); i++ {
		// New ids each round, so every round inserts rather than replaces.
		for j := range spans {
			spans[j].ID = spans[j].TraceID + "-" + spans[j].SpanID + "-" + string(rune('a'+i%26)) + itoa(i)
		}
		if err := s.Write(ctx, spans, traces); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(spans))*float64(b.N)/b.Elapsed().Seconds(), "spans/s")
	s.Close()
	b.ReportMetric(float64(diskBytes(b, dir))/float64(len(spans)*b.N), "disk-B/span")
	// CPU time (all goroutines, background merging included) is steadier than wall time on a busy machine.
	b.ReportMetric(float64((cpuTime(b)-cpu0).Microseconds())/float64(len(spans)*b.N), "cpu-us/span")
}

// diskBytes is the size of the files under dir.
func diskBytes(b *testing.B, dir string) int64 {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			info, ierr := d.Info()
			if ierr != nil {
				return ierr
			}
			n += info.Size()
		}
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	return n
}

// cpuTime is the user plus system CPU time of the process so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func itoa(i int) string { return time.Duration(i).String() }

// benchSpans is the size of the query benchmark's index: 1,000,000, or $MESHTRACE_BENCH_SPANS (a smaller
// index builds in a fraction of the time).
func benchSpans(b *testing.B) int {
	v := os.Getenv("MESHTRACE_BENCH_SPANS")
	if v == "" {
		return 1_000_000
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		b.Fatalf("MESHTRACE_BENCH_SPANS=%q: want a positive integer", v)
	}
	return n
}

// openBenchStore opens the query benchmark's index, building it on first use under testdata-local/
// (gitignored) or $MESHTRACE_BENCH_DIR; building a million spans takes long and reports the ingest rate.
func openBenchStore(b *testing.B) *Store {
	n := benchSpans(b)
	dir := os.Getenv("MESHTRACE_BENCH_DIR")
	if dir == "" {
		name := "embedded-1m-v4" // bump the suffix when the index layout changes
		if n != 1_000_000 {
			name = fmt.Sprintf("embedded-%d-v4", n)
		}
		dir = filepath.Join("..", "..", "..", "testdata-local", name)
	}
	done := filepath.Join(dir, "complete")
	if _, err := os.Stat(done); err != nil {
		if err := os.RemoveAll(dir); err != nil {
			b.Fatal(err)
		}
		s, err := Open(dir)
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		var spans []document.Span
		var traces []document.Trace
		ctx := context.Background()
		flush := func() error {
			err := s.Write(ctx, spans, traces)
			spans, traces = spans[:0], traces[:0]
			return err
		}
		err = storetest.Generate(n, 42, func(sp []document.Span, tr document.Trace) error {
			spans, traces = append(spans, sp...), append(traces, tr)
			if len(spans) >= 10_000 {
				return flush()
			}
			return nil
		})
		if err == nil {
			err = flush()
		}
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
		el := time.Since(start)
		b.Logf("built %d-span index in %v: %.0f spans/s (with trace documents)", n, el, float64(n)/el.Seconds())
		if err := os.WriteFile(done, []byte(el.String()+"\n"), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	s, err := Open(dir)
	if err != nil {
		b.Fatal(err)
	}
	settle(b, s)
	return s
}

// settle waits until the store's background merges are done, so that queries are timed without them.
func settle(b *testing.B, s *Store) {
	for _, x := range []*index{s.spans, s.traces} {
		for stable := 0; stable < 20; {
			time.Sleep(100 * time.Millisecond)
			x.commitMu.Lock()
			idle := len(x.merging) == 0
			x.commitMu.Unlock()
			if idle {
				stable++
			} else {
				stable = 0
			}
		}
	}
	x := s.spans
	x.mu.RLock()
	b.Logf("%d span segments", len(x.segs))
	x.mu.RUnlock()
}

// BenchmarkQuery1M measures the product queries, the Jaeger lists (services, operations) and a business-key
// facet on a 1,000,000-span index (see benchSpans) and reports p50 and p99 latency through querysvc (compile
// included).
func BenchmarkQuery1M(b *testing.B) {
	s := openBenchStore(b)
	defer s.Close()
	ctx := tenant.NewContext(context.Background(), tenant.All()) // the read side refuses a read without a scope
	svc := querysvc.New(s, querysvc.Config{Keys: rollup.DefaultKeys})
	// A trace id that exists: the most recent trace.
	q, err := query.Compile("", storetest.Now)
	if err != nil {
		b.Fatal(err)
	}
	latest, err := querysvc.Execute(ctx, s, q, querysvc.Page{Limit: 1}, rollup.DefaultKeys)
	if err != nil || len(latest.Spans) == 0 {
		b.Fatalf("no spans in the benchmark index: %v", err)
	}
	search := func(src string, target query.Scope, limit int) func() (int, error) {
		return func() (int, error) {
			q, err := query.Compile(src, storetest.Now)
			if err != nil {
				return 0, err
			}
			q.Target = target
			res, err := querysvc.Execute(ctx, s, q, querysvc.Page{Limit: limit}, rollup.DefaultKeys)
			return len(res.Spans) + len(res.Traces), err
		}
	}
	cases := []struct {
		name string
		run  func() (int, error) // returns the number of hits or values
	}{
		{"TraceSpans", search("trace_id="+latest.Spans[0].TraceID+" sort=start", query.SpanScope, store.MaxLimit)},
		{"SlowServiceB", search("service=service-b duration>=1s since=10m", query.SpanScope, 100)},
		{"CustomerTraces", search("customer_id=123 service=inventory-service trace.duration>500ms since=1h", query.TraceScope, 100)},
		{"CustomerTracesTraceScope", search("trace.customer_id=123 trace.services=inventory-service trace.duration>500ms since=1h", query.TraceScope, 100)},
		{"Services", func() (int, error) {
			names, _, err := svc.Services(ctx, querysvc.Window{})
			return len(names), err
		}},
		{"Operations", func() (int, error) {
			ops, _, err := svc.Operations(ctx, querysvc.OperationQuery{Service: "inventory-service"})
			return len(ops), err
		}},
		{"FailingCustomersLastHour", func() (int, error) {
			q, err := query.Compile("error=true since=1h", storetest.Now)
			if err != nil {
				return 0, err
			}
			res, err := svc.Facet(ctx, q, "customer_id", 10)
			return len(res.Values), err
		}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			var lat []time.Duration
			hits := 0
			for b.Loop() {
				t0 := time.Now()
				n, err := c.run()
				if err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t0))
				hits = n
			}
			if hits == 0 {
				b.Fatalf("%s: no hits; the benchmark would measure nothing", c.name)
			}
			slices.Sort(lat)
			b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
			b.ReportMetric(ms(lat[len(lat)*99/100]), "p99-ms")
			b.ReportMetric(float64(hits), "hits")
		})
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
