// Package demo drives a realistic mesh scenario through the compiled meshtrace filter and sends what the filter
// exports to a running indexer over OTLP/HTTP, exactly as a proxy would.
//
// The mesh is a gateway and three services, frontend -> checkout -> inventory. Each hop is one instance of the
// compiled plugin on the wazero host (testenv/wasmhost), configured like an Istio proxy: the gateway with
// direction "gateway", the services as inbound sidecars. Only the gateway request carries x-customer-id; the
// gateway's route strips that header (as gateways strip PII), so later hops learn the customer only from the
// `baggage` the policy propagates. The applications between the proxies forward traceparent and baggage as
// instrumented applications do. Time is a virtual clock shared by all proxies, so slow requests (inventory
// taking 600 ms and more) cost no wall time and the traces spread over the last hour.
package demo

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"

	"github.com/meshtrace/meshtrace/filter/plugin"
	"github.com/meshtrace/meshtrace/testenv/wasmhost"
)

// customers are the customer ids requests are spread over; "123" is the one the demo asks about.
var customers = []string{"123", "456", "789", "1001", "2002"}

// Config describes one scenario run.
type Config struct {
	Module   *wasmhost.Module // the compiled filter
	Endpoint string           // OTLP/HTTP traces URL of the indexer, e.g. http://127.0.0.1:4318/v1/traces
	Requests int              // gateway requests to drive
	Seed     uint64           // makes the slow and failing requests reproducible
	End      time.Time        // the last request starts shortly before End; the first one Window earlier
	Window   time.Duration
	Progress io.Writer // one line per 100 requests; nil for none
}

// Result counts what the scenario did.
type Result struct {
	Requests, Slow, Failed int
	SpansExported          int64 // summed over the four proxies, from the plugin's own metrics
	SpansDropped           int64
	ExportFailures         int64
}

// Hop names, in call order.
var hops = []struct{ service, direction string }{
	{"istio-ingressgateway", "gateway"},
	{"frontend", "inbound"},
	{"checkout", "inbound"},
	{"inventory-service", "inbound"},
}

// policy is the tagging policy of one proxy: the customer id comes from the gateway's header or from baggage,
// is normalised ("cust-123" -> "123") and propagated in baggage to every later hop.
func policy(service, direction string) string {
	return `{
  "service": {"name": "` + service + `", "namespace": "shop"},
  "direction": "` + direction + `",
  "export": {"cluster": "outbound|4318||meshtrace-indexer.meshtrace.svc.cluster.local", "authority": "meshtrace-indexer",
             "path": "/v1/traces", "batch_size": 200, "flush_interval_ms": 1000},
  "tags": [
    {"attribute": "customer_id", "from": [{"header": "x-customer-id"}, {"baggage": "customer_id"}],
     "regex": "^(?:cust-)?([0-9]+)$", "propagate": true, "envoy_header": "x-meshtrace-customer-id"},
    {"attribute": "tenant_id", "from": [{"header": "x-tenant"}, {"baggage": "tenant_id"}], "lowercase": true, "propagate": true},
    {"attribute": "session", "from": [{"cookie": "session"}], "hash": true}
  ],
  "hmac_key": "demo-only-key"
}`
}

// Run drives cfg.Requests requests through the four proxies and flushes their exporters.
func Run(ctx context.Context, cfg Config) (Result, error) {
	clock := &virtualClock{}
	exporter := &otlpForwarder{url: cfg.Endpoint, client: &http.Client{Timeout: 30 * time.Second}}
	proxies := make([]*wasmhost.Host, len(hops))
	for i, hop := range hops {
		h, err := cfg.Module.Load(ctx, wasmhost.Config{
			PluginConfig: []byte(policy(hop.service, hop.direction)),
			Properties: map[string][]byte{
				"xds.node.metadata.NAMESPACE":     []byte("shop"),
				"xds.node.metadata.WORKLOAD_NAME": []byte(hop.service),
			},
			Now:      clock.Now,
			HTTPCall: exporter.forward,
		})
		if err != nil {
			return Result{}, fmt.Errorf("load the filter as %s: %w", hop.service, err)
		}
		defer h.Close(context.WithoutCancel(ctx))
		proxies[i] = h
	}

	rng := rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15))
	spacing := cfg.Window / time.Duration(max(cfg.Requests, 1))
	start := cfg.End.Add(-cfg.Window)
	var res Result
	for i := range cfg.Requests {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		clock.set(start.Add(time.Duration(i) * spacing))
		req := request{customer: customers[i%len(customers)], tenant: []string{"Acme", "Globex"}[i%2]}
		switch p := rng.Float64(); {
		case p < 0.06:
			req.fail = true
			req.inventory = time.Duration(2+rng.IntN(30)) * time.Millisecond
		case p < 0.20:
			req.inventory = time.Duration(600+rng.IntN(600)) * time.Millisecond
		default:
			req.inventory = time.Duration(5+rng.IntN(60)) * time.Millisecond
		}
		if err := drive(proxies, clock, req); err != nil {
			return res, fmt.Errorf("request %d: %w", i, err)
		}
		res.Requests++
		if req.fail {
			res.Failed++
		} else if req.inventory > 500*time.Millisecond {
			res.Slow++
		}
		if (i+1)%50 == 0 {
			if err := tickAll(proxies, clock); err != nil {
				return res, err
			}
		}
		if cfg.Progress != nil && (i+1)%100 == 0 {
			fmt.Fprintf(cfg.Progress, "   %d/%d requests through gateway -> frontend -> checkout -> inventory\n", i+1, cfg.Requests)
		}
	}
	// The exporters send what is left on their next tick; answers arrive on the tick after.
	for range 3 {
		clock.advance(2 * time.Second)
		if err := tickAll(proxies, clock); err != nil {
			return res, err
		}
	}
	if exporter.err != nil {
		return res, exporter.err
	}
	for _, h := range proxies {
		m := h.Metrics()
		res.SpansExported += m[plugin.MetricSpansExported]
		res.SpansDropped += m[plugin.MetricSpansDropped]
		res.ExportFailures += m[plugin.MetricExportFailures]
	}
	return res, nil
}

// request is one gateway request of the scenario.
type request struct {
	customer, tenant string
	inventory        time.Duration // time inventory takes to answer
	fail             bool          // inventory answers 503
}

// drive sends one request through the chain: every proxy sees its request headers on the way in and its
// response on the way out, with the virtual clock advancing as the work would.
func drive(proxies []*wasmhost.Host, clock *virtualClock, r request) error {
	headers := [][2]string{
		{":method", "POST"}, {":path", "/checkout?cart=" + r.customer}, {":scheme", "https"},
		{":authority", "shop.example.com"}, {"user-agent", "demo-client/1.0"},
		{"x-customer-id", "cust-" + r.customer}, {"x-tenant", r.tenant},
		{"cookie", "session=s-" + r.customer + "; theme=dark"},
	}
	paths := []string{"/checkout", "/api/cart/checkout", "/api/inventory/reserve"}
	streams := make([]*wasmhost.HTTPStream, len(proxies))
	for i, h := range proxies {
		s := h.NewHTTPStream(map[string][]byte{
			"source.address":   []byte("10.0.0." + strconv.Itoa(10+i) + ":5" + strconv.Itoa(1000+i)),
			"xds.cluster_name": []byte("inbound|8080||" + hops[i].service + ".shop.svc.cluster.local"),
			"upstream.address": []byte("127.0.0.6:8080"),
			"request.protocol": []byte("HTTP/1.1"),
			"response.flags":   le(0),
		})
		streams[i] = s
		if _, err := s.RequestHeaders(headers, true); err != nil {
			return fmt.Errorf("%s request headers: %w", hops[i].service, err)
		}
		if i+1 == len(proxies) {
			break
		}
		// What leaves this proxy is what the application (or, at the gateway, the route) sees; the next hop
		// gets a new request that carries only the trace context and baggage.
		out := s.RequestHeadersNow()
		clock.advance(time.Duration(300+100*i) * time.Microsecond)
		next := [][2]string{
			{":method", "POST"}, {":path", paths[i]}, {":scheme", "http"},
			{":authority", hops[i+1].service + ".shop.svc.cluster.local:8080"}, {"user-agent", "shop-" + hops[i].service + "/2.3"},
		}
		for _, kv := range out {
			if kv[0] == "traceparent" || kv[0] == "tracestate" || kv[0] == "baggage" {
				next = append(next, kv)
			}
		}
		headers = next
	}
	status := http.StatusOK
	if r.fail {
		status = http.StatusServiceUnavailable
	}
	clock.advance(r.inventory)
	for i := len(streams) - 1; i >= 0; i-- {
		s := streams[i]
		s.SetProperty("response.code", le(int64(status)))
		if _, err := s.ResponseHeaders([][2]string{{":status", strconv.Itoa(status)}, {"content-type", "application/json"}}, true); err != nil {
			return fmt.Errorf("%s response headers: %w", hops[i].service, err)
		}
		if err := s.Complete(); err != nil {
			return fmt.Errorf("%s complete: %w", hops[i].service, err)
		}
		clock.advance(time.Duration(1+i) * time.Millisecond)
		if status == http.StatusServiceUnavailable {
			status = http.StatusBadGateway // the callers map inventory's 503 to a bad gateway
		}
	}
	return nil
}

func tickAll(proxies []*wasmhost.Host, clock *virtualClock) error {
	for i, h := range proxies {
		if err := h.Tick(); err != nil {
			return fmt.Errorf("%s tick: %w", hops[i].service, err)
		}
		if err := h.Flush(); err != nil {
			return fmt.Errorf("%s flush: %w", hops[i].service, err)
		}
	}
	return nil
}

// otlpForwarder answers the filter's dispatch_http_call by POSTing the body to the indexer, the way Envoy
// would send it to the export cluster.
type otlpForwarder struct {
	url    string
	client *http.Client
	err    error // first transport error; the filter sees it as a failed call
}

func (f *otlpForwarder) forward(call wasmhost.HTTPCallRequest) (wasmhost.HTTPCallResponse, bool) {
	req, err := http.NewRequest(http.MethodPost, f.url, bytes.NewReader(call.Body))
	if err != nil {
		f.err = err
		return wasmhost.HTTPCallResponse{Failed: true}, true
	}
	for _, kv := range call.Headers {
		if kv[0] != "" && kv[0][0] != ':' {
			req.Header.Add(kv[0], kv[1])
		}
	}
	resp, err := f.client.Do(req)
	if err != nil {
		if f.err == nil {
			f.err = fmt.Errorf("export to %s: %w", f.url, err)
		}
		return wasmhost.HTTPCallResponse{Failed: true}, true
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK && f.err == nil {
		f.err = fmt.Errorf("export to %s: %s: %s", f.url, resp.Status, bytes.TrimSpace(body))
	}
	return wasmhost.HTTPCallResponse{Headers: [][2]string{{":status", strconv.Itoa(resp.StatusCode)}}, Body: body}, true
}

// virtualClock is the proxies' shared host clock.
type virtualClock struct{ now time.Time }

func (c *virtualClock) Now() time.Time          { return c.now }
func (c *virtualClock) set(t time.Time)         { c.now = t }
func (c *virtualClock) advance(d time.Duration) { c.now = c.now.Add(d) }

// le encodes an integer property as Envoy does: 8 little-endian bytes.
func le(v int64) []byte { return binary.LittleEndian.AppendUint64(nil, uint64(v)) }
