package plugin_test

import (
	"os"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/testenv/artifact"
	"github.com/meshtrace/meshtrace/testenv/wasmhost"
)

// benchPolicy has three tag rules (header with regex, JWT claim with hash, cookie) and the default export.
const benchPolicy = `{"hmac_key": "k", "tags": [
  {"attribute": "customer_id", "from": [{"header": "x-customer-id"}], "regex": "^cust-([0-9]+)$", "propagate": true},
  {"attribute": "tenant", "from": [{"jwt_claim": "tenant"}], "lowercase": true},
  {"attribute": "session", "from": [{"cookie": "session"}], "hash": true}]}`

// benchRoutes is a routes list of 16 templates for the "routed" case: the benchmark path (/orders/42)
// matches the last one, so every request walks the whole list, each template failing at its first or
// second segment as most do in a real list.
const benchRoutes = `"routes": ["/api/v1/users/{id}", "/api/v1/users/{id}/orders", "/api/v1/cart/*", "/api/v1/checkout",
  "/api/v1/products", "/api/v1/products/{sku}", "/api/v1/search", "/api/v2/*", "/healthz", "/readyz", "/metrics",
  "/static/*", "/login", "/logout", "/orders", "/orders/{id}"], `

var benchHeaders = append(get(),
	[2]string{"traceparent", inParent},
	[2]string{"x-customer-id", "cust-42"},
	[2]string{"authorization", jwt(`{"tenant":"ACME","sub":"u-1"}`)},
	[2]string{"cookie", "session=abc123; theme=dark"},
)

var benchResponse = [][2]string{{":status", "200"}, {"content-type", "application/json"}}

// loadDriven loads the filter with policy (benchPolicy if empty) and an export target that answers 200 at
// once.
func loadDriven(tb testing.TB, m *wasmhost.Module, policy ...string) *wasmhost.Host {
	tb.Helper()
	cfg := benchPolicy
	if len(policy) > 0 {
		cfg = policy[0]
	}
	h, err := m.Load(tb.Context(), wasmhost.Config{
		PluginConfig: []byte(cfg),
		Properties:   map[string][]byte{"xds.listener_direction": intProp(1), "xds.node.metadata.WORKLOAD_NAME": []byte("bench")},
		HTTPCall: func(wasmhost.HTTPCallRequest) (wasmhost.HTTPCallResponse, bool) {
			return wasmhost.HTTPCallResponse{Headers: [][2]string{{":status", "200"}}}, true
		},
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { h.Close(tb.Context()) })
	return h
}

// drive runs one full request; every 64 requests it lets the host deliver queued wake-ups and export
// responses, so export cost is amortised as it is in a proxy.
func drive(tb testing.TB, h *wasmhost.Host, i int) { driveWith(tb, h, benchHeaders, i) }

func driveWith(tb testing.TB, h *wasmhost.Host, headers [][2]string, i int) {
	s := h.NewHTTPStream(nil)
	if _, err := s.RequestHeaders(headers, true); err != nil {
		tb.Fatal(err)
	}
	if _, err := s.ResponseHeaders(benchResponse, true); err != nil {
		tb.Fatal(err)
	}
	if err := s.Complete(); err != nil {
		tb.Fatal(err)
	}
	if i%64 == 63 {
		if err := h.Flush(); err != nil { // queue wake-up: dispatch
			tb.Fatal(err)
		}
		if err := h.Flush(); err != nil { // export response
			tb.Fatal(err)
		}
	}
}

// BenchmarkRequest measures one HTTP stream through each compiled build: "traced" joins the W3C context,
// applies 3 tag rules and exports (amortised); "routed" is "traced" with 16 routes, the last matching;
// "envoy-mode" applies the same tag rules in trace.mode envoy
// (no span, no export); "untraced" is the same stream on a plugin that records nothing (the host and SDK round trips alone), to read the filter's own share. allocs/op are the host
// side's; cpu-ns/op is process CPU time, steadier than wall time on a loaded machine; guest-bytes is the
// guest's linear memory at the end.
func BenchmarkRequest(b *testing.B) {
	cases := []struct{ name, policy string }{
		{"traced", benchPolicy},
		{"routed", "{" + benchRoutes + benchPolicy[1:]}, // traced, and named by the 16th of 16 routes
		{"untraced", `{"direction": "outbound", "trace": {"start_new": false}}`},
		{"envoy-mode", `{"trace": {"mode": "envoy"}, ` + benchPolicy[1:]}, // the 3 tag rules, no span
	}
	for _, build := range artifact.Builds(b) {
		for _, c := range cases {
			b.Run(build.Name+"/"+c.name, func(b *testing.B) {
				h := loadDriven(b, module(b, build), c.policy)
				headers := benchHeaders
				if c.name == "untraced" {
					headers = get()
				}
				for i := 0; i < 1000; i++ { // warm up
					driveWith(b, h, headers, i)
				}
				b.ReportAllocs()
				b.ResetTimer()
				cpu := cpuTime()
				n := 0
				for i := 0; b.Loop(); i++ {
					driveWith(b, h, headers, i)
					n++
				}
				b.StopTimer()
				b.ReportMetric(float64(cpuTime()-cpu)/float64(n), "cpu-ns/op")
				if dropped := h.Metrics()["meshtrace_spans_dropped_total"]; dropped != 0 {
					b.Fatalf("%d spans dropped", dropped)
				}
				b.ReportMetric(float64(h.MemoryBytes()), "guest-bytes")
			})
		}
	}
}

// BenchmarkRequestVersus compares the traced stream of BenchmarkRequest on each build with an earlier build of
// the same kind, named by MESHTRACE_BASELINE_WASM (TinyGo) or MESHTRACE_BASELINE_GO_WASM (Go). Both are loaded
// in one process and driven in alternating blocks of 64 requests, so the load of a shared machine falls on
// both alike; it reports the 10th percentile and the median wall time per request over the blocks, and
// their ratio to the baseline's.
func BenchmarkRequestVersus(b *testing.B) {
	baselines := map[string]string{
		"tinygo": os.Getenv("MESHTRACE_BASELINE_WASM"),
		"go":     os.Getenv("MESHTRACE_BASELINE_GO_WASM"),
	}
	for _, build := range artifact.Builds(b) {
		b.Run(build.Name, func(b *testing.B) {
			path := baselines[build.Name]
			if path == "" {
				b.Skip("no baseline to compare with: set MESHTRACE_BASELINE_WASM / MESHTRACE_BASELINE_GO_WASM to an earlier build")
			}
			hosts := []*wasmhost.Host{
				loadDriven(b, module(b, artifact.Build{Name: "baseline", Path: path})),
				loadDriven(b, module(b, build)),
			}
			perReq := alternate(b, hosts)
			n := len(perReq[0])
			p10, p50 := n/10, n/2
			b.ReportMetric(perReq[0][p10], "base-p10-ns/req")
			b.ReportMetric(perReq[1][p10], "p10-ns/req")
			b.ReportMetric(perReq[1][p10]/perReq[0][p10], "p10-ratio")
			b.ReportMetric(perReq[1][p50]/perReq[0][p50], "p50-ratio")
		})
	}
}

// BenchmarkRequestRoutes measures what the routes cost: the traced stream of BenchmarkRequest on each build
// without routes and with benchRoutes (16 templates, the last matching), both loaded in one process and
// driven in alternating blocks of 64 requests like BenchmarkRequestVersus. It reports the 10th percentile
// wall time per request of both and their difference.
func BenchmarkRequestRoutes(b *testing.B) {
	for _, build := range artifact.Builds(b) {
		b.Run(build.Name, func(b *testing.B) {
			m := module(b, build)
			hosts := []*wasmhost.Host{loadDriven(b, m), loadDriven(b, m, "{"+benchRoutes+benchPolicy[1:])}
			perReq := alternate(b, hosts)
			p10 := len(perReq[0]) / 10
			b.ReportMetric(perReq[0][p10], "plain-p10-ns/req")
			b.ReportMetric(perReq[1][p10], "routed-p10-ns/req")
			b.ReportMetric(perReq[1][p10]-perReq[0][p10], "routes-ns/req")
		})
	}
}

// cpuTime returns the CPU time (user and system) the process has used, in nanoseconds. On a shared,
// loaded machine it is a steadier measure of the work per request than wall time.
func cpuTime() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// TestGuestMemoryFlat runs many requests through each build and checks that guest memory does not grow
// after warm-up (TinyGo's heap settles after 256 requests of this mix; the Go runtime's after 3000 to 8000,
// depending on when its collector runs). MESHTRACE_SOAK_REQUESTS sets the count (default 30000; the README
// reports 1000000).
func TestGuestMemoryFlat(t *testing.T) {
	const warm = 10000
	n := 30000
	if v := os.Getenv("MESHTRACE_SOAK_REQUESTS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n <= warm {
			t.Fatalf("MESHTRACE_SOAK_REQUESTS=%q: want an integer > %d", v, warm)
		}
	}
	forEachBuild(t, func(t *testing.T, m *wasmhost.Module) {
		h := loadDriven(t, m)
		var after uint64
		for i := 0; i < n; i++ {
			if i == warm {
				after = h.MemoryBytes()
			}
			drive(t, h, i)
		}
		end := h.MemoryBytes()
		t.Logf("%d requests: guest memory %d bytes after %d, %d at the end; exported %d", n, after, warm, end,
			h.Metrics()["meshtrace_spans_exported_total"])
		checkMemoryFlat(t, after, end, "request", warm, n)
		if live := h.LiveContexts(); live != 1 {
			t.Errorf("%d live contexts, want the root only", live)
		}
	})
}

// leakSlack is how much guest memory may still grow after warm-up: one 64 KiB wasm page. A garbage-collected
// heap (the Go build's above all) occasionally takes one more page when a collection runs late; a leak of
// per-request or per-connection state grows by many pages over the thousands of rounds these tests run.
const leakSlack = 64 << 10

// checkMemoryFlat fails the test when guest memory grew by more than leakSlack between round warm (from) and
// round n (to).
func checkMemoryFlat(t *testing.T, from, to uint64, round string, warm, n int) {
	t.Helper()
	if to > from+leakSlack {
		t.Errorf("guest memory grew from %d to %d bytes between %s %d and %d", from, to, round, warm, n)
	}
}

// alternate warms both hosts up, then drives them in alternating blocks of 64 requests for the benchmark's
// duration and returns each one's wall time per request of every block, sorted: alternating keeps the
// shared machine's drift out of the comparison.
func alternate(b *testing.B, hosts []*wasmhost.Host) [2][]float64 {
	b.Helper()
	const block = 64
	for i := 0; i < 1000; i++ { // warm up
		for _, h := range hosts {
			drive(b, h, i)
		}
	}
	var perReq [2][]float64
	b.ResetTimer()
	for r := 0; b.Loop(); r++ {
		for k, h := range hosts {
			start := time.Now()
			for i := 0; i < block; i++ {
				drive(b, h, r*block+i)
			}
			perReq[k] = append(perReq[k], float64(time.Since(start).Nanoseconds())/block)
		}
	}
	b.StopTimer()
	for k := range perReq {
		slices.Sort(perReq[k])
	}
	return perReq
}
