// Package e2e runs the compiled meshtrace filter (both builds) in real Envoy 1.40 processes: a gateway and
// Istio-like sidecars in front of a chain of Go services, exporting to an indexer or a stand-in collector.
package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/indexer/api"
	"github.com/meshtrace/meshtrace/indexer/document"
	"github.com/meshtrace/meshtrace/testenv/artifact"
	"github.com/meshtrace/meshtrace/testenv/envoy/mesh"
)

// Chain services, in call order behind the gateway.
var services = []string{"service-a", "service-b"}

const gatewayService = "istio-ingressgateway"

// policy returns the plugin configuration: customer_id from the x-customer-id header (only the gateway
// request has it) or from baggage, propagated in baggage to later hops; export flushed quickly.
func policy(direction string, extraExport string) string {
	return `{
  "direction": "` + direction + `",
  "export": {"flush_interval_ms": 100, "batch_size": 64, "max_buffered": 1024, "timeout_ms": 3000, "max_retries": 2` + extraExport + `},
  "tags": [
    {"attribute": "customer_id", "from": [{"header": "x-customer-id"}, {"baggage": "customer_id"}],
     "regex": "^(?:cust-)?([0-9]+)$", "propagate": true}
  ]
}`
}

// startMesh runs the chain with plugin, exporting to collectorAddr, and stops it at cleanup.
func startMesh(t *testing.T, plugin, collectorAddr string) *mesh.Mesh {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	m, err := mesh.Start(ctx, mesh.Config{
		Plugin:        plugin,
		SidecarPolicy: policy("auto", ""),
		GatewayPolicy: policy("gateway", ""),
		Collector:     collectorAddr,
		Services:      services,
		Dir:           t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for name, p := range m.Envoys() {
				t.Logf("--- %s envoy.log (tail) ---\n%s", name, p.LogTail(30))
			}
		}
		if err := m.Close(); err != nil {
			t.Error(err)
		}
	})
	return m
}

var client = &http.Client{Timeout: 20 * time.Second}

// send makes one request through the gateway and returns status and body.
func send(t *testing.T, m *mesh.Mesh, path string, header map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+m.GatewayAddr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "shop.example.com"
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(body))
}

// waitFor polls cond every 50ms until it returns true or the timeout passes.
func waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// pluginStats sums a plugin counter over every Envoy of the mesh.
func pluginStats(t *testing.T, m *mesh.Mesh, metric string) int64 {
	t.Helper()
	var sum int64
	for name, p := range m.Envoys() {
		stats, err := p.Stats(context.Background(), `^wasmcustom\.`+metric+`$`)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		v, ok := stats["wasmcustom."+metric]
		if !ok {
			t.Fatalf("%s: /stats has no wasmcustom.%s", name, metric)
		}
		sum += v
	}
	return sum
}

// hop is what one span of the chain must look like, in parent -> child order.
type hop struct {
	service string
	kind    string
}

var wantHops = []hop{
	{gatewayService, "server"},
	{"service-a", "server"},
	{"service-a", "client"},
	{"service-b", "server"},
}

// checkTrace asserts the spans of one request form the chain gateway -> a (in) -> a (out) -> b (in), each
// tagged with customer, and returns them in chain order.
func checkTrace(t *testing.T, spans []document.Span, customer string) []document.Span {
	t.Helper()
	if len(spans) != len(wantHops) {
		t.Errorf("customer %s: %d spans, want %d: %s", customer, len(spans), len(wantHops), describe(spans))
		return nil
	}
	byParent := make(map[string]document.Span)
	for _, s := range spans {
		byParent[s.ParentSpanID] = s
	}
	chain := make([]document.Span, 0, len(spans))
	parent := ""
	for i, want := range wantHops {
		s, ok := byParent[parent]
		if !ok {
			t.Errorf("customer %s: hop %d (%s %s) has no span with parent %q: %s", customer, i, want.service, want.kind, parent, describe(spans))
			return nil
		}
		if s.Service != want.service || s.Kind != want.kind {
			t.Errorf("customer %s: hop %d is %s %s, want %s %s", customer, i, s.Service, s.Kind, want.service, want.kind)
			if s.Service == "unknown_service" {
				t.Log("the filter read no node metadata: Envoy 1.40 serves it as xds.node.metadata.*, and the listener direction as xds.listener_direction")
			}
		}
		checkAttr(t, s, "customer_id", customer)
		checkAttr(t, s, "http.request.method", "GET")
		checkAttr(t, s, "url.path", "/checkout")
		checkAttr(t, s, "http.response.status_code", "200")
		if s.Error || s.End < s.Start {
			t.Errorf("customer %s: hop %d: error=%v start=%d end=%d", customer, i, s.Error, s.Start, s.End)
		}
		chain = append(chain, s)
		parent = s.SpanID
	}
	return chain
}

func checkAttr(t *testing.T, s document.Span, key, want string) {
	t.Helper()
	if got := fmt.Sprint(s.Attr[key]); got != want {
		t.Errorf("%s %s span: attribute %s = %q, want %q", s.Service, s.Kind, key, got, want)
	}
}

func describe(spans []document.Span) string {
	var b strings.Builder
	for _, s := range spans {
		fmt.Fprintf(&b, "\n  %s/%s parent=%s %s %s attrs=%v", s.TraceID, s.SpanID, s.ParentSpanID, s.Service, s.Kind, s.Attr)
	}
	return b.String()
}

// TestEnvoy runs both builds in a gateway + sidecar mesh and checks, in order on one mesh: the traces of a
// request chain, then how export failures are absorbed (collector erroring, slow, down).
func TestEnvoy(t *testing.T) {
	for _, build := range artifact.Builds(t) {
		t.Run(build.Name, func(t *testing.T) {
			ix := startIndexer(t)
			col := newCollector(t, ix.Receiver)
			m := startMesh(t, build.Path, col.Addr())
			steps := []struct {
				name string
				run  func(*testing.T, *mesh.Mesh, *collector)
			}{
				{"chain", func(t *testing.T, m *mesh.Mesh, col *collector) { testChain(t, m, ix) }},
				{"collector errors then recovers", testCollectorRecovers},
				{"collector slow", testCollectorSlow},
				{"collector down", testCollectorDown},
			}
			for _, step := range steps {
				t.Run(step.name, func(t *testing.T) { step.run(t, m, col) })
			}
		})
	}
}

const requestsPerStep = 5

// sendChain sends requestsPerStep requests, customers first..first+requestsPerStep-1, and checks each
// succeeded within maxLatency.
func sendChain(t *testing.T, m *mesh.Mesh, first int, maxLatency time.Duration) {
	t.Helper()
	for i := range requestsPerStep {
		start := time.Now()
		code, body := send(t, m, "/checkout", map[string]string{"x-customer-id": "cust-" + strconv.Itoa(first+i)})
		if elapsed := time.Since(start); elapsed > maxLatency {
			t.Errorf("request %d took %v (more than %v)", i, elapsed, maxLatency)
		}
		if code != 200 || body != "service-a > service-b" {
			t.Fatalf("request %d: %d %q", i, code, body)
		}
	}
}

// testChain checks, through the indexer's search API, that every request made one trace of four spans
// gateway -> a (in) -> a (out) -> b (in) tagged with the customer, and what the apps saw.
func testChain(t *testing.T, m *mesh.Mesh, ix *indexer) {
	before := snapshot(t, m)
	const first = 100
	sendChain(t, m, first, 10*time.Second)
	seenB := m.Apps["service-b"].Seen()
	for i := range requestsPerStep {
		customer := strconv.Itoa(first + i)
		var found api.SearchResponse
		if !waitFor(30*time.Second, func() bool {
			found = ix.search(t, "customer_id="+customer, "spans")
			return found.Total >= len(wantHops)
		}) {
			t.Errorf("customer %s: the indexer has %d spans, want %d: %s", customer, found.Total, len(wantHops), describe(found.Spans))
			continue
		}
		ids := make(map[string]bool)
		for _, s := range found.Spans {
			ids[s.TraceID] = true
		}
		if len(ids) != 1 {
			t.Errorf("customer %s: spans in %d traces, want one: %s", customer, len(ids), describe(found.Spans))
			continue
		}
		// Each proxy exports on its own schedule, so the trace document converges as the hops' batches are
		// written: wait for it (bounded) rather than read it once.
		var tr api.TraceResponse
		wantServices := []string{gatewayService, "service-a", "service-b"}
		if !waitFor(30*time.Second, func() bool {
			tr = ix.trace(t, found.Spans[0].TraceID)
			doc := tr.Trace
			return doc.SpanCount == len(wantHops) && doc.ErrorCount == 0 && doc.RootService == gatewayService &&
				slices.Equal(doc.Services, wantServices) && slices.Equal(doc.Keys["customer_id"], []string{customer})
		}) {
			t.Errorf("customer %s: trace document %+v, want %d spans, no error, root %s, services %v, customer_id [%s]",
				customer, tr.Trace, len(wantHops), gatewayService, wantServices, customer)
		}
		chain := checkTrace(t, tr.Spans, customer)
		if chain == nil {
			continue
		}
		// The last sidecar rewrote traceparent to its own span before service-b.
		want := "00-" + chain[3].TraceID + "-" + chain[3].SpanID + "-01"
		if !seen(seenB, "Traceparent", want) {
			t.Errorf("service-b never saw traceparent %s", want)
		}
	}
	// Only the gateway request had x-customer-id: service-b got the tag through baggage.
	for _, h := range seenB {
		if h.Get("X-Customer-Id") != "" || !strings.Contains(h.Get("Baggage"), "customer_id=") {
			t.Errorf("service-b request headers: x-customer-id %q, baggage %q", h.Get("X-Customer-Id"), h.Get("Baggage"))
		}
	}
	// The exporter counts a batch when Envoy hands it the answer, just after the indexer stored it.
	want := counters{exported: int64(requestsPerStep * len(wantHops))}
	var d counters
	if !waitFor(10*time.Second, func() bool { d = snapshot(t, m).minus(before); return d == want }) {
		t.Errorf("plugin counters moved by %+v, want %+v", d, want)
	}
}

// testCollectorRecovers: the collector answers 503 with Retry-After; every Envoy fails its first export
// and retries after the delay, when the collector is healthy again. Nothing is lost.
func testCollectorRecovers(t *testing.T, m *mesh.Mesh, col *collector) {
	before := snapshot(t, m)
	col.retryAfter.Store(2)
	col.status.Store(http.StatusServiceUnavailable)
	sendChain(t, m, 200, 10*time.Second)
	envoys := int64(len(m.Envoys()))
	if !waitFor(10*time.Second, func() bool { return snapshot(t, m).minus(before).failures >= envoys }) {
		t.Fatalf("export failures moved by %d, want %d (one per Envoy)", snapshot(t, m).minus(before).failures, envoys)
	}
	col.status.Store(0)
	want := int64(requestsPerStep * len(wantHops))
	var d counters
	if !waitFor(30*time.Second, func() bool { d = snapshot(t, m).minus(before); return d.exported+d.dropped >= want }) {
		t.Fatalf("plugin counters moved by %+v, want %d spans settled", d, want)
	}
	if d.exported != want || d.dropped != 0 || d.failures < envoys || d.failures > envoys*2 {
		t.Errorf("plugin counters moved by %+v, want exported %d, dropped 0, failures %d..%d", d, want, envoys, envoys*2)
	}
}

// testCollectorSlow: the collector answers after 5s, beyond the 3s export timeout. Requests are not
// slowed down; every attempt times out, and after max_retries the spans are dropped and counted.
func testCollectorSlow(t *testing.T, m *mesh.Mesh, col *collector) {
	col.delay.Store(int64(5 * time.Second))
	defer col.delay.Store(0)
	expectDropped(t, m, col, 300)
}

// testCollectorDown: nothing listens at the export cluster's address any more.
func testCollectorDown(t *testing.T, m *mesh.Mesh, col *collector) {
	col.srv.Close()
	expectDropped(t, m, col, 400)
}

// expectDropped sends a round of requests (each must finish in well under the 3s export timeout: the
// export never holds a request) and checks every span is eventually dropped after exactly 1+max_retries
// failed attempts per batch.
func expectDropped(t *testing.T, m *mesh.Mesh, col *collector, firstCustomer int) {
	t.Helper()
	before := snapshot(t, m)
	received := len(col.Spans())
	sendChain(t, m, firstCustomer, 2*time.Second)
	want := int64(requestsPerStep * len(wantHops))
	if !waitFor(60*time.Second, func() bool { return snapshot(t, m).minus(before).dropped >= want }) {
		t.Fatalf("spans dropped moved by %d, want %d", snapshot(t, m).minus(before).dropped, want)
	}
	d := snapshot(t, m).minus(before)
	const attempts = 3 // 1 + max_retries in the policy
	envoys := int64(len(m.Envoys()))
	if d.dropped != want || d.exported != 0 || d.failures < attempts*envoys || d.failures%attempts != 0 {
		t.Errorf("plugin counters moved by %+v, want dropped %d, exported 0, failures a multiple of %d and >= %d",
			d, want, attempts, attempts*envoys)
	}
	if got := len(col.Spans()) - received; got != 0 {
		t.Errorf("collector stored %d spans of timed-out calls", got)
	}
}

// counters are the plugin's export counters summed over the mesh's Envoys.
type counters struct{ exported, dropped, failures int64 }

func (c counters) minus(o counters) counters {
	return counters{c.exported - o.exported, c.dropped - o.dropped, c.failures - o.failures}
}

func snapshot(t *testing.T, m *mesh.Mesh) counters {
	t.Helper()
	return counters{
		exported: pluginStats(t, m, "meshtrace_spans_exported_total"),
		dropped:  pluginStats(t, m, "meshtrace_spans_dropped_total"),
		failures: pluginStats(t, m, "meshtrace_export_failures_total"),
	}
}

func seen(headers []http.Header, key, value string) bool {
	for _, h := range headers {
		if h.Get(key) == value {
			return true
		}
	}
	return false
}
