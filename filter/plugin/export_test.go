package plugin_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/testenv/wasmhost"
)

const (
	exported = "meshtrace_spans_exported_total"
	dropped  = "meshtrace_spans_dropped_total"
	failures = "meshtrace_export_failures_total"
)

// The export cases run on the compiled builds only (forEachBuild): they move the host clock, answer several
// calls in flight and wait for queue wake-ups after a callback, which the native runner's emulator does not
// model (see native_test.go).

func exportPolicy(batch, buffered, retries int) string {
	return `{"export": {"cluster": "otlp", "authority": "indexer.test", "path": "/v1/traces", "batch_size": ` +
		strconv.Itoa(batch) + `, "max_buffered": ` + strconv.Itoa(buffered) + `, "flush_interval_ms": 500, "timeout_ms": 1500, "max_retries": ` +
		strconv.Itoa(retries) + `}}`
}

func (e *env) requests(n int) {
	for i := 0; i < n; i++ {
		e.do(request{headers: get(), status: "200"})
	}
}

func (e *env) wantMetrics(exp, drop, fail int64) {
	e.t.Helper()
	if got := [3]int64{e.metric(exported), e.metric(dropped), e.metric(failures)}; got != [3]int64{exp, drop, fail} {
		e.t.Fatalf("exported/dropped/failures = %v, want %v", got, [3]int64{exp, drop, fail})
	}
}

func TestExportRequest(t *testing.T) {
	forEachBuild(t, func(t *testing.T, m *wasmhost.Module) {
		e := setup(t, m, exportPolicy(3, 10, 2), nil)
		if e.h.TickPeriod() != 500*time.Millisecond {
			t.Errorf("tick period %v, want the flush interval", e.h.TickPeriod())
		}
		e.requests(2)
		if err := e.h.Flush(); err != nil {
			t.Fatal(err)
		}
		if n := len(e.h.PendingHTTPCalls()); n != 0 {
			t.Fatalf("%d calls before the batch is full or a tick", n)
		}
		e.requests(1) // fills the batch: the root context is woken and sends without waiting for a tick
		if err := e.h.Flush(); err != nil {
			t.Fatal(err)
		}
		calls := e.h.PendingHTTPCalls()
		if len(calls) != 1 {
			t.Fatalf("%d calls after the batch filled, want 1", len(calls))
		}
		c := calls[0]
		for k, want := range map[string]string{":method": "POST", ":path": "/v1/traces", ":authority": "indexer.test", "content-type": "application/x-protobuf"} {
			if got, _ := c.Header(k); got != want {
				t.Errorf("header %s = %q, want %q", k, got, want)
			}
		}
		if c.Cluster != "otlp" || c.Timeout != 1500*time.Millisecond {
			t.Errorf("cluster %q timeout %v", c.Cluster, c.Timeout)
		}
		reqs := e.answer("200")
		if len(reqs) != 1 || len(reqs[0].ResourceSpans) != 1 || len(reqs[0].ResourceSpans[0].ScopeSpans[0].Spans) != 3 {
			t.Fatalf("export request = %v", reqs)
		}
		e.wantMetrics(3, 0, 0)
		e.requests(1) // a partial batch goes out on the next tick
		if spans := e.spans(); len(spans) != 1 {
			t.Fatalf("tick sent %d spans, want 1", len(spans))
		}
		e.wantMetrics(4, 0, 0)
	})
}

func TestExportBatchesBounded(t *testing.T) {
	forEachBuild(t, func(t *testing.T, m *wasmhost.Module) {
		e := setup(t, m, exportPolicy(4, 10, 0), nil)
		e.requests(13) // 10 buffered (one call in flight), 3 dropped
		e.h.Flush()
		e.wantMetrics(0, 3, 0)
		sizes := []int{}
		for len(e.h.PendingHTTPCalls()) > 0 {
			for _, r := range e.answer("200") {
				sizes = append(sizes, len(r.ResourceSpans[0].ScopeSpans[0].Spans))
			}
			e.h.Tick()
		}
		if want := []int{4, 4, 2}; len(sizes) != 3 || sizes[0] != 4 || sizes[1] != 4 || sizes[2] != 2 {
			t.Fatalf("batch sizes %v, want %v", sizes, want)
		}
		e.wantMetrics(10, 3, 0)
	})
}

func TestExportRetries(t *testing.T) {
	forEachBuild(t, func(t *testing.T, m *wasmhost.Module) {
		t.Run("retried then delivered", func(t *testing.T) {
			e := setup(t, m, exportPolicy(10, 100, 2), nil)
			e.requests(2)
			if n := len(e.export("503")); n != 1 {
				t.Fatalf("%d calls", n)
			}
			if n := len(e.export("")); n != 1 { // transport failure
				t.Fatalf("%d retry calls", n)
			}
			reqs := e.export("200")
			if len(reqs) != 1 || len(reqs[0].ResourceSpans[0].ScopeSpans[0].Spans) != 2 {
				t.Fatalf("second retry = %v", reqs)
			}
			e.wantMetrics(2, 0, 2)
		})
		t.Run("dropped after max retries", func(t *testing.T) {
			e := setup(t, m, exportPolicy(10, 100, 1), nil)
			e.requests(3)
			e.export("502")
			e.export("504")
			if n := len(e.export("200")); n != 0 {
				t.Fatalf("%d calls after the retries ran out", n)
			}
			e.wantMetrics(0, 3, 2)
		})
		t.Run("not retried on 400", func(t *testing.T) {
			e := setup(t, m, exportPolicy(10, 100, 3), nil)
			e.requests(2)
			e.export("400")
			if n := len(e.export("200")); n != 0 {
				t.Fatalf("%d calls after a 400", n)
			}
			e.wantMetrics(0, 2, 1)
		})
		t.Run("retry-after honoured", func(t *testing.T) {
			e := setup(t, m, exportPolicy(10, 100, 3), nil)
			e.requests(1)
			e.h.Tick()
			for _, c := range e.h.PendingHTTPCalls() {
				e.h.RespondHTTPCall(c.ID, wasmhost.HTTPCallResponse{Headers: [][2]string{{":status", "429"}, {"retry-after", "5"}}})
			}
			e.clock.advance(4 * time.Second)
			if n := len(e.export("200")); n != 0 {
				t.Fatalf("retried before Retry-After")
			}
			e.clock.advance(time.Second)
			if n := len(e.export("200")); n != 1 {
				t.Fatalf("%d calls after Retry-After, want 1", n)
			}
			e.wantMetrics(1, 0, 1)
		})
		t.Run("unknown cluster", func(t *testing.T) {
			c := newClock()
			h, err := m.Load(t.Context(), wasmhost.Config{PluginConfig: []byte(exportPolicy(10, 100, 1)), Now: c.Now, Clusters: []string{"other"}})
			if err != nil {
				t.Fatal(err)
			}
			defer h.Close(t.Context())
			e := &env{t: t, h: h, clock: c}
			e.requests(2)
			e.h.Tick()
			e.h.Tick()
			e.h.Tick()
			e.wantMetrics(0, 2, 2)
		})
	})
}

func TestExportDrainsOnShutdown(t *testing.T) {
	forEachBuild(t, func(t *testing.T, m *wasmhost.Module) {
		t.Run("nothing buffered", func(t *testing.T) {
			e := setup(t, m, exportPolicy(10, 100, 2), nil)
			if finished, err := e.h.Done(); err != nil || !finished {
				t.Fatalf("Done() = %v, %v; want an immediate finish", finished, err)
			}
		})
		t.Run("buffered spans sent first", func(t *testing.T) {
			e := setup(t, m, exportPolicy(2, 100, 2), nil)
			e.requests(3) // one full batch and one partial one
			if n := len(e.h.PendingHTTPCalls()); n != 0 {
				t.Fatalf("%d calls before shutdown", n)
			}
			finished, err := e.h.Done()
			if err != nil || finished {
				t.Fatalf("Done() = %v, %v; want a deferred finish", finished, err)
			}
			if spans := len(e.answer("503")[0].ResourceSpans[0].ScopeSpans[0].Spans); spans != 2 {
				t.Fatalf("first shutdown batch has %d spans, want 2", spans)
			}
			if e.h.DoneCalled() {
				t.Fatal("proxy_done before the last batch settled")
			}
			if spans := len(e.answer("200")[0].ResourceSpans[0].ScopeSpans[0].Spans); spans != 1 {
				t.Fatalf("second shutdown batch has %d spans, want 1", spans)
			}
			if !e.h.DoneCalled() {
				t.Fatal("proxy_done not called after the last batch")
			}
			e.wantMetrics(1, 2, 1) // the failed batch is not retried during shutdown
		})
	})
}
