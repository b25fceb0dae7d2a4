package flatten

import (
	"os"
	"reflect"
	"testing"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// envoyFixture is a real export of Envoy 1.40's OpenTelemetry tracer (OTLP/gRPC, captured from a throwaway
// Envoy with Istio's custom tags, see docs/receiver.md): an outbound (CLIENT) and an inbound (SERVER) span of
// GET http://backend.default.svc.cluster.local:8080/cart/items?id=42, and a CLIENT span of a POST answered
// 503 UH (no healthy upstream).
const envoyFixture = "testdata/envoy-1.40-otel-export.pb"

// envoyUpstreamFixture is the same Envoy with spawn_upstream_span: the router's upstream span ("router
// <cluster> egress", CLIENT) of GET /cart/items and the connection manager's span, now SERVER.
const envoyUpstreamFixture = "testdata/envoy-1.40-otel-export-upstream.pb"

func readEnvoyFixture(t testing.TB) []byte { return readFixture(t, envoyFixture) }

func readFixture(t testing.TB, name string) []byte {
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestEnvoyFixture(t *testing.T) {
	b := readEnvoyFixture(t)
	checkSame(t, b, DefaultLimits)
	docs, rej, err := FromProtobuf(nil, b, DefaultLimits)
	if err != nil || rej.Count != 0 || len(docs) != 3 {
		t.Fatalf("%d documents, %+v, %v", len(docs), rej, err)
	}
	resource := map[string]any{
		"service.name": "frontend", EnvoyServiceNameAttr: "frontend.default",
		"service.namespace": "default", "k8s.namespace.name": "default",
		"telemetry.sdk.name": "envoy", "telemetry.sdk.language": "cpp",
		"telemetry.sdk.version": "9e5580933739775e8bce696a57a2e1bc99368f23/1.40.0/Clean/RELEASE/BoringSSL",
	}
	istio := map[string]any{
		"component": "proxy", "node_id": "sidecar~10.1.2.3~frontend-7d9f8b6c5-x2k4p.default~default.svc.cluster.local",
		"istio.canonical_service": "frontend", "istio.canonical_revision": "v1", "istio.namespace": "default",
		"istio.mesh_id": "cluster.local", "istio.cluster_id": "Kubernetes",
	}
	with := func(m map[string]any) map[string]any {
		for k, v := range istio {
			m[k] = v
		}
		return m
	}
	get := map[string]any{
		"http.request.method": "GET", "url.full": "http://backend.default.svc.cluster.local:8080/cart/items?id=42",
		"url.scheme": "http", "server.address": "backend.default.svc.cluster.local", "server.port": int64(8080),
		"url.path": "/cart/items", "network.protocol.version": "1.1", "http.response.status_code": int64(200),
		"user_agent.original": "curl/8.5.0", "client.address": "127.0.0.1",
		"http.request.header.x-request-id": "c0570eaa-20c4-99c5-8a52-748f936fc1d3",
		"http.request.body.size":           int64(0), "http.response.body.size": int64(3),
		EnvoyOperationAttr: "backend.default.svc.cluster.local:8080/*",
	}
	server := with(map[string]any{"network.peer.address": "127.0.0.1", "envoy.upstream.cluster": "inbound|8080||"})
	client := with(map[string]any{"envoy.upstream.cluster": "outbound|8080||backend.default.svc.cluster.local"})
	for k, v := range get {
		server[k], client[k] = v, v
	}
	failed := with(map[string]any{
		"http.request.method": "POST", "url.full": "http://broken.default.svc.cluster.local:8080/broken/x",
		"url.scheme": "http", "server.address": "broken.default.svc.cluster.local", "server.port": int64(8080),
		"url.path": "/broken/x", "network.protocol.version": "1.1", "http.response.status_code": int64(503),
		"user_agent.original": "curl/7.88.1", "client.address": "127.0.0.1",
		"http.request.header.x-request-id": "e9e9febe-7481-958c-91ab-6aabdb99abb2",
		"http.request.body.size":           int64(0), "http.response.body.size": int64(19),
		"envoy.upstream.cluster": "outbound|8080||broken.default.svc.cluster.local", "envoy.response_flags": "UH",
		EnvoyOperationAttr: "broken.default.svc.cluster.local:8080/*",
	})
	want := []struct {
		name, kind, status string
		attr               map[string]any
	}{{"GET", "server", "unset", server}, {"GET", "client", "unset", client}, {"POST", "client", "error", failed}}
	for i, d := range docs {
		w := want[i]
		if d.Name != w.name || d.Kind != w.kind || d.StatusCode != w.status || d.Service != "frontend" || d.Scope != "envoy" {
			t.Errorf("span %d: name %q kind %q status %q service %q scope %q", i, d.Name, d.Kind, d.StatusCode, d.Service, d.Scope)
		}
		if !reflect.DeepEqual(d.Attr, w.attr) {
			t.Errorf("span %d attributes:\n got %v\nwant %v", i, d.Attr, w.attr)
		}
		if !reflect.DeepEqual(d.Resource, resource) {
			t.Errorf("span %d resource:\n got %v\nwant %v", i, d.Resource, resource)
		}
	}
}

func TestEnvoyUpstreamFixture(t *testing.T) {
	b := readFixture(t, envoyUpstreamFixture)
	checkSame(t, b, DefaultLimits)
	docs, rej, err := FromProtobuf(nil, b, DefaultLimits)
	if err != nil || rej.Count != 0 || len(docs) != 2 {
		t.Fatalf("%d documents, %+v, %v", len(docs), rej, err)
	}
	up, down := docs[0], docs[1]
	if up.Name != "router outbound|8080||backend.default.svc.cluster.local egress" || up.Kind != "client" || up.Service != "frontend" {
		t.Errorf("upstream span: name %q kind %q service %q", up.Name, up.Kind, up.Service)
	}
	for k, v := range map[string]any{
		"network.peer.address": "127.0.0.1", "network.peer.port": int64(15006), "http.response.status_code": int64(200),
		"envoy.upstream.cluster": "outbound|8080||backend.default.svc.cluster.local", "network.protocol.version": "1.1",
	} {
		if up.Attr[k] != v {
			t.Errorf("upstream span %s = %v, want %v", k, up.Attr[k], v)
		}
	}
	for _, k := range []string{"peer.address", "upstream_address", "client.address", "response_flags", EnvoyOperationAttr} {
		if v, ok := up.Attr[k]; ok {
			t.Errorf("upstream span has %s = %v", k, v)
		}
	}
	if down.Name != "GET" || down.Kind != "server" || down.Attr["network.peer.address"] != "127.0.0.1" || down.Attr["client.address"] != "127.0.0.1" {
		t.Errorf("downstream span: %q %q %v", down.Name, down.Kind, down.Attr)
	}
}

// envoySpan is an Envoy-shaped span (tags as Envoy's OpenTelemetry tracer sets them), for the unit tests and
// the fuzz corpus.
func envoySpan() *tracepb.Span {
	sp := validSpan()
	sp.Name = "router outbound|8080||backend.default.svc.cluster.local egress"
	sp.Kind = tracepb.Span_SPAN_KIND_CLIENT
	sp.Status = nil
	sp.Attributes = []*commonpb.KeyValue{
		kv("component", sv("proxy")), kv("http.method", sv("PUT")), kv("http.protocol", sv("HTTP/2")),
		kv("http.url", sv("https://[::1]:8443/v1/items#frag")), kv("http.status_code", sv("502")),
		kv("upstream_cluster", sv("outbound|8080||backend.default.svc.cluster.local")),
		kv("upstream_cluster.name", sv("backend-alt")), kv("upstream_address", sv("10.0.0.7:8080")),
		kv("peer.address", sv("10.0.0.5")), kv("downstream_cluster", sv("-")), kv("user_agent", sv("-")),
		kv("request_size", sv("12")), kv("response_size", sv("x")), kv("response_flags", sv("UF,URX")),
		kv("error", sv("true")), kv("zone", sv("")), kv("guid:x-request-id", sv("r-1")),
		kv("istio.canonical_service", sv("frontend")), kv("istio.namespace", sv("shop")),
	}
	return sp
}

func TestEnvoySpanMapping(t *testing.T) {
	plain := validSpan()
	noIstio := envoySpan()
	noIstio.Attributes = noIstio.Attributes[:len(noIstio.Attributes)-2]
	rss := resourceSpans(envoySpan(), plain, noIstio)
	rss[0].Resource.Attributes = []*commonpb.KeyValue{kv("service.name", sv("frontend.shop"))}
	docs, _, err := Spans(nil, rss, DefaultLimits)
	if err != nil || len(docs) != 3 {
		t.Fatalf("%d documents, %v", len(docs), err)
	}
	d := docs[0]
	want := map[string]any{
		"component": "proxy", "http.request.method": "PUT", "network.protocol.version": "2",
		"url.full": "https://[::1]:8443/v1/items#frag", "url.scheme": "https", "server.address": "::1", "server.port": int64(8443),
		"url.path": "/v1/items", "http.response.status_code": int64(502),
		"envoy.upstream.cluster": "outbound|8080||backend.default.svc.cluster.local", "upstream_cluster.name": "backend-alt",
		"network.peer.address": "10.0.0.7", "network.peer.port": int64(8080), "client.address": "10.0.0.5",
		"http.request.body.size": int64(12), "response_size": "x", "envoy.response_flags": "UF,URX",
		"http.request.header.x-request-id": "r-1", "istio.canonical_service": "frontend", "istio.namespace": "shop",
		EnvoyOperationAttr: "router outbound|8080||backend.default.svc.cluster.local egress",
	}
	if !reflect.DeepEqual(d.Attr, want) {
		t.Errorf("attributes:\n got %v\nwant %v", d.Attr, want)
	}
	if d.Name != "PUT" || d.StatusCode != "error" || !d.Error || d.Service != "frontend" {
		t.Errorf("name %q status %q error %v service %q", d.Name, d.StatusCode, d.Error, d.Service)
	}
	wantRes := map[string]any{"service.name": "frontend", EnvoyServiceNameAttr: "frontend.shop", "service.namespace": "shop", "k8s.namespace.name": "shop"}
	if !reflect.DeepEqual(d.Resource, wantRes) {
		t.Errorf("resource %v, want %v", d.Resource, wantRes)
	}
	if p := docs[1]; p.Name != "GET /cart" || p.Service != "frontend.shop" || len(p.Resource) != 1 || p.Attr["http.request.method"] != "GET" {
		t.Errorf("a span not from Envoy was changed: %+v", p)
	}
	if n := docs[2]; n.Service != "frontend.shop" || n.Name != "PUT" || n.Resource["service.name"] != "frontend.shop" {
		t.Errorf("without istio.canonical_service the service must stay Envoy's: %+v", n)
	}
}

// TestEnvoySpanOddValues feeds the rewrite values of other types than Envoy sends (arrays, numbers), as
// any client may: it must neither panic nor move them to names that mean something else.
func TestEnvoySpanOddValues(t *testing.T) {
	arr := &commonpb.AnyValue{Value: &commonpb.AnyValue_ArrayValue{ArrayValue: &commonpb.ArrayValue{Values: []*commonpb.AnyValue{sv("a")}}}}
	sp := validSpan()
	sp.Attributes = []*commonpb.KeyValue{kv("component", sv("proxy")), kv("upstream_cluster", arr), kv("upstream_cluster.name", arr),
		kv("http.status_code", iv(404)), kv("request_size", iv(-1)), kv("peer.address", arr), kv("upstream_address", arr), kv("http.url", iv(1))}
	docs, _, err := Spans(nil, resourceSpans(sp), DefaultLimits)
	if err != nil || len(docs) != 1 {
		t.Fatal(err)
	}
	a := docs[0].Attr
	if a["http.response.status_code"] != int64(404) || a["request_size"] != int64(-1) || a["http.url"] != int64(1) || docs[0].Name != "GET /cart" {
		t.Fatalf("odd values mapped wrongly: %v", a)
	}
	checkSame(t, marshal(t, resourceSpans(sp)...), DefaultLimits)
}

func TestEnvoySpanKeepsSemanticNames(t *testing.T) {
	sp := envoySpan()
	sp.Attributes = append(sp.Attributes, kv("http.request.method", sv("GET")), kv("url.path", sv("/own")))
	docs, _, _ := Spans(nil, resourceSpans(sp), DefaultLimits)
	a := docs[0].Attr
	if a["http.request.method"] != "GET" || a["http.method"] != "PUT" || a["url.path"] != "/own" {
		t.Fatalf("names the span already had must win: %v", a)
	}
}
