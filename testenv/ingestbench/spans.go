package ingestbench

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/meshtrace/meshtrace/indexer/document"
	"github.com/meshtrace/meshtrace/indexer/flatten"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// SpanAttributes and ResourceAttributes are the number of attributes on every generated span and resource,
// as the filter records them (see the README's "Spans and export").
const (
	SpanAttributes     = 14
	ResourceAttributes = 5
)

// services is the call chain of a generated trace: span i is a SERVER span of services[i], child of span i-1.
var services = []string{"istio-ingressgateway", "frontend", "checkout", "inventory-service", "payments", "shipping"}

var (
	methods    = []string{"GET", "GET", "GET", "POST", "POST", "PUT", "DELETE"}
	paths      = []string{"/checkout", "/api/cart/%d", "/api/inventory/reserve", "/api/orders/%d", "/api/payments/%d/capture", "/api/shipping/quote"}
	tenants    = []string{"acme", "globex", "initech", "umbrella", "hooli"}
	userAgents = []string{
		"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
		"Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
		"okhttp/4.12.0",
		"curl/8.11.0",
	}
)

// generator makes OTLP requests of filter-like spans: whole traces of 4-6 spans through the service chain,
// fresh random ids, timestamps just before now. Not safe for concurrent use; each exporter has its own.
type generator struct {
	rng  *rand.Rand
	pods map[string]string // service -> pod name, fixed per generator as a real pod's would be
}

func newGenerator(seed uint64) *generator {
	g := &generator{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), pods: map[string]string{}}
	for _, s := range services {
		g.pods[s] = fmt.Sprintf("%s-%x-%s", s, g.rng.Uint32()&0xfffffff, g.word(5))
	}
	return g
}

func (g *generator) word(n int) string {
	const letters = "bcdfghjklmnpqrstvwxz2456789"
	b := make([]byte, n)
	for i := range b {
		b[i] = letters[g.rng.IntN(len(letters))]
	}
	return string(b)
}

func (g *generator) id(n int) []byte {
	b := make([]byte, n)
	for i := 0; i < n; i += 8 {
		var w [8]byte
		binary.LittleEndian.PutUint64(w[:], g.rng.Uint64())
		copy(b[i:], w[:])
	}
	return b
}

// request returns an export request of exactly n spans (whole traces of 4-6 spans; the last trace may be
// cut shorter to make n) and the hex ids of its traces.
func (g *generator) request(n int, now time.Time) (*coltracepb.ExportTraceServiceRequest, []string) {
	bySvc := map[string]*tracepb.ScopeSpans{}
	var order []string
	var traceIDs []string
	for n > 0 {
		size := min(n, 4+g.rng.IntN(3))
		n -= size
		traceID := g.id(16)
		traceIDs = append(traceIDs, hex.EncodeToString(traceID))
		start := now.Add(-time.Duration(g.rng.IntN(2000)) * time.Millisecond)
		dur := time.Duration(5+g.rng.IntN(1200)) * time.Millisecond
		code := 200
		switch r := g.rng.IntN(100); {
		case r < 3:
			code = 503
		case r < 6:
			code = 404
		}
		method := methods[g.rng.IntN(len(methods))]
		customer := fmt.Sprint(1 + g.rng.IntN(100_000))
		tenant := tenants[g.rng.IntN(len(tenants))]
		ua := userAgents[g.rng.IntN(len(userAgents))]
		emailHash := hex.EncodeToString(g.id(32))
		clientIP := g.ip()
		var parent []byte
		for i := range size {
			svc := services[i]
			spanID := g.id(8)
			// Each hop starts a little after its caller and ends a little before it.
			skew := time.Duration(i) * time.Duration(100+g.rng.IntN(400)) * time.Microsecond
			s, e := start.Add(skew), start.Add(dur-skew)
			path := paths[min(i, len(paths)-1)]
			if i > 0 {
				path = paths[g.rng.IntN(len(paths))]
			}
			if strings.Contains(path, "%d") {
				path = fmt.Sprintf(path, g.rng.IntN(1_000_000))
			}
			sp := &tracepb.Span{
				TraceId:           traceID,
				SpanId:            spanID,
				ParentSpanId:      parent,
				Name:              method,
				Kind:              tracepb.Span_SPAN_KIND_SERVER,
				StartTimeUnixNano: uint64(s.UnixNano()),
				EndTimeUnixNano:   uint64(e.UnixNano()),
				Attributes: []*commonpb.KeyValue{
					str("http.request.method", method),
					str("url.path", path),
					str("url.scheme", "http"),
					str("server.address", svc+".shop.svc.cluster.local"),
					num("server.port", 8080),
					str("user_agent.original", ua),
					num("http.response.status_code", int64(code)),
					str("client.address", clientIP),
					str("network.peer.address", g.ip()),
					num("network.peer.port", int64(30000+g.rng.IntN(30000))),
					str("envoy.upstream.cluster", "inbound|8080||"+svc+".shop.svc.cluster.local"),
					str("customer_id", customer),
					str("tenant_id", tenant),
					str("user.email_hash", emailHash),
				},
			}
			if code >= 500 {
				sp.Status = &tracepb.Status{Code: tracepb.Status_STATUS_CODE_ERROR}
			}
			parent = spanID
			ss := bySvc[svc]
			if ss == nil {
				ss = &tracepb.ScopeSpans{Scope: &commonpb.InstrumentationScope{Name: "meshtrace-filter"}}
				bySvc[svc] = ss
				order = append(order, svc)
			}
			ss.Spans = append(ss.Spans, sp)
		}
	}
	req := &coltracepb.ExportTraceServiceRequest{}
	for _, svc := range order {
		req.ResourceSpans = append(req.ResourceSpans, &tracepb.ResourceSpans{
			Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{
				str("service.name", svc),
				str("service.namespace", "shop"),
				str("k8s.namespace.name", "shop"),
				str("k8s.pod.name", g.pods[svc]),
				str("meshtrace.workload", svc+"-v1"),
			}},
			ScopeSpans: []*tracepb.ScopeSpans{bySvc[svc]},
		})
	}
	return req, traceIDs
}

func (g *generator) ip() string {
	return fmt.Sprintf("10.%d.%d.%d", g.rng.IntN(256), g.rng.IntN(256), 1+g.rng.IntN(254))
}

func str(k, v string) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
}

func num(k string, v int64) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: v}}}
}

// Documents returns n span documents of filter-like spans (the generator's, flattened as the indexer does),
// deterministically for a seed: what store benchmarks index.
func Documents(n int, seed uint64, now time.Time) ([]document.Span, error) {
	req, _ := newGenerator(seed).request(n, now)
	docs, rej, err := flatten.Spans(nil, req.ResourceSpans, flatten.Limits{})
	if err != nil {
		return nil, err
	}
	if rej.Count > 0 {
		return nil, fmt.Errorf("ingestbench: %d generated spans rejected: %s", rej.Count, rej.Summary())
	}
	return docs, nil
}

// Bodies returns count OTLP/HTTP protobuf request bodies of n filter-like spans each, as the load's exporters
// send them (whole traces, fresh ids, timestamps just before now), deterministically for a seed: what
// in-process ingest benchmarks post to a receiver.
func Bodies(count, n int, seed uint64, now time.Time) ([][]byte, error) {
	g := newGenerator(seed)
	out := make([][]byte, count)
	for i := range out {
		req, _ := g.request(n, now)
		b, err := proto.Marshal(req)
		if err != nil {
			return nil, err
		}
		out[i] = b
	}
	return out, nil
}
