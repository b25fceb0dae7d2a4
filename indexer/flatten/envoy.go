package flatten

import (
	"strconv"
	"strings"

	"github.com/meshtrace/meshtrace/indexer/document"
)

// Spans from Envoy's own tracers (envoy.tracers.opentelemetry, and Zipkin or others through an OTel
// Collector) carry Envoy's tracing tags (source/common/tracing/http_tracer_impl.cc: http.method, http.url,
// upstream_cluster, ...) and, in Istio, its custom tags (istio.canonical_service, istio.namespace, ...).
// Both flatten paths rewrite them, once the span's document is built, to the OpenTelemetry semantic-convention
// names the meshtrace filter uses, so that one query finds the HTTP spans of both. docs/receiver.md has the
// table.

// Envoy's tracing tags, as Envoy 1.40 sets them on every HTTP span (all values are strings; "-" means none).
const (
	envoyComponent        = "component" // always "proxy": what identifies an Envoy span
	envoyProxyComponent   = "proxy"
	envoyMethod           = "http.method"
	envoyURL              = "http.url"
	envoyProtocol         = "http.protocol"
	envoyStatusCode       = "http.status_code"
	envoyUpstreamCluster  = "upstream_cluster"
	envoyUpstreamName     = "upstream_cluster.name"
	envoyUpstreamAddress  = "upstream_address"
	envoyPeerAddress      = "peer.address"
	envoyDownstream       = "downstream_cluster"
	envoyUserAgent        = "user_agent"
	envoyRequestID        = "guid:x-request-id"
	envoyRequestSize      = "request_size"
	envoyResponseSize     = "response_size"
	envoyResponseFlags    = "response_flags"
	envoyZone             = "zone"
	envoyError            = "error"
	istioCanonicalService = "istio.canonical_service"
	istioNamespace        = "istio.namespace"
)

// Attribute names the rewrite gives Envoy spans, besides the OpenTelemetry HTTP ones the filter uses.
const (
	// EnvoyOperationAttr keeps the span name Envoy gave (the route decorator, e.g.
	// "backend.default.svc.cluster.local:8080/*") when the span is renamed after its HTTP method.
	EnvoyOperationAttr = "envoy.operation"
	// EnvoyServiceNameAttr is the resource attribute that keeps Envoy's service.name (Istio: the service
	// cluster, "<app>.<namespace>") when istio.canonical_service replaces it.
	EnvoyServiceNameAttr = "envoy.service.name"
)

// IsEnvoySpan reports whether span attributes are those of an Envoy tracer span: Envoy tags every span of
// its HTTP tracing with component=proxy (Tracing::Tags::Component), whatever the tracer and whatever
// converted it to OTLP; the scope name "envoy" would miss Zipkin spans relayed by a Collector.
func IsEnvoySpan(attr map[string]any) bool {
	return attr[envoyComponent] == envoyProxyComponent
}

// envoyRenames are the tags whose value moves unchanged to the filter's name (when the span does not
// already have that name).
var envoyRenames = [...][2]string{
	{envoyMethod, "http.request.method"},
	{envoyUpstreamCluster, "envoy.upstream.cluster"},
	{envoyUserAgent, "user_agent.original"},
	{envoyRequestID, "http.request.header.x-request-id"},
	{envoyResponseFlags, "envoy.response_flags"},
	{envoyDownstream, "envoy.downstream_cluster"},
}

// envoySizes are the tags holding decimal byte counts, which become numbers.
var envoySizes = [...][2]string{
	{envoyRequestSize, "http.request.body.size"},
	{envoyResponseSize, "http.response.body.size"},
}

// envoyResources derives the resources of Envoy spans that name their Istio workload, for one resource:
// spans of one proxy share a canonical service and namespace, so they share one derived resource map.
type envoyResources struct {
	base    map[string]any
	derived map[[2]string]map[string]any
}

// reset starts a new ResourceSpans whose resource is base.
func (r *envoyResources) reset(base map[string]any) {
	r.base, r.derived = base, nil
}

// envoySpan rewrites the document of an Envoy span in place (see docs/receiver.md, "Envoy and Istio
// spans"): Envoy's tags take the filter's names, the span is named after its HTTP method, and with
// istio.canonical_service the service and the resource become the workload's, as the filter names them.
// Documents of other spans are left as they are. doc.Attr is the span's own map; doc.Resource is shared and
// never changed (a derived copy replaces it).
func (r *envoyResources) envoySpan(doc *document.Span) {
	a := doc.Attr
	if !IsEnvoySpan(a) {
		return
	}
	for _, k := range [...]string{envoyDownstream, envoyUserAgent, envoyResponseFlags, envoyZone, envoyUpstreamAddress} {
		if s, ok := a[k].(string); ok && (s == "" || s == "-") {
			delete(a, k) // Envoy's "no value"
		}
	}
	// Envoy sets http.method and http.url on the span of the downstream request (HCM) only, not on the
	// upstream span of the router (spawn_upstream_span: "router <cluster> egress").
	_, downstream := a[envoyURL]
	method, ok := a[envoyMethod].(string)
	if !ok {
		method, ok = a["http.request.method"].(string) // Envoy configured for semantic-convention names
	}
	if ok {
		downstream = true
		if doc.Name != "" && doc.Name != method {
			setAbsent(a, EnvoyOperationAttr, doc.Name)
		}
		doc.Name = method
		if method == "" {
			doc.Name = "HTTP"
		}
	}
	for _, kv := range envoyRenames {
		move(a, kv[0], kv[1], a[kv[0]])
	}
	if c, ok := a["envoy.upstream.cluster"].(string); ok && a[envoyUpstreamName] == c {
		delete(a, envoyUpstreamName) // the cluster again: it differs only with an alt_stat_name
	}
	moveNumber(a, envoyStatusCode, "http.response.status_code")
	if a["http.response.status_code"] == int64(0) {
		delete(a, "http.response.status_code") // no response
	}
	for _, kv := range envoySizes {
		moveNumber(a, kv[0], kv[1])
	}
	if u, ok := a[envoyURL].(string); ok {
		envoyURLAttrs(a, u)
		move(a, envoyURL, "url.full", u)
	}
	if p, ok := a[envoyProtocol].(string); ok {
		if v, ok := strings.CutPrefix(p, "HTTP/"); ok && v != "" {
			move(a, envoyProtocol, "network.protocol.version", v)
		}
	}
	// peer.address is the downstream's address on the downstream span and the upstream host's ("ip:port") on
	// the router's upstream span. The filter's network.peer.address is the downstream on server spans and the
	// upstream host on client spans; its client.address is the downstream.
	if p, ok := a[envoyPeerAddress].(string); ok {
		host, port := splitHostPort(p)
		if !downstream || doc.Kind != "client" {
			setAbsent(a, "network.peer.address", host)
			if port > 0 {
				setAbsent(a, "network.peer.port", port)
			}
		}
		if downstream {
			setAbsent(a, "client.address", host)
		}
		delete(a, envoyPeerAddress)
		if a[envoyUpstreamAddress] == p {
			delete(a, envoyUpstreamAddress)
		}
	}
	if u, ok := a[envoyUpstreamAddress].(string); ok && doc.Kind == "client" {
		if host, port := splitHostPort(u); host != "" {
			if _, taken := a["network.peer.address"]; !taken {
				delete(a, envoyUpstreamAddress)
				a["network.peer.address"] = host
				if port > 0 {
					setAbsent(a, "network.peer.port", port)
				}
			}
		}
	}
	if a[envoyError] == "true" {
		delete(a, envoyError) // Envoy's error tag: 5xx or a failed stream
		if doc.StatusCode == "unset" {
			doc.StatusCode, doc.Error = "error", true
		}
	}
	if svc, ok := a[istioCanonicalService].(string); ok && svc != "" {
		ns, _ := a[istioNamespace].(string)
		doc.Service = svc
		doc.Resource = r.resource(svc, ns)
	}
}

// resource returns the base resource as the filter would have made it for the workload: service.name the
// canonical service (Envoy's kept as envoy.service.name), service.namespace and k8s.namespace.name the
// namespace where absent.
func (r *envoyResources) resource(svc, ns string) map[string]any {
	key := [2]string{svc, ns}
	if m, ok := r.derived[key]; ok {
		return m
	}
	m := make(map[string]any, len(r.base)+3)
	for k, v := range r.base {
		m[k] = v
	}
	if old, ok := m["service.name"]; ok && old != svc {
		setAbsent(m, EnvoyServiceNameAttr, old)
	}
	m["service.name"] = svc
	if ns != "" {
		setAbsent(m, "service.namespace", ns)
		setAbsent(m, "k8s.namespace.name", ns)
	}
	if r.derived == nil {
		r.derived = map[[2]string]map[string]any{}
	}
	r.derived[key] = m
	return m
}

// move renames attribute from to to with value v, unless the span has no from or already has to (whose
// value then wins and from is kept).
func move(a map[string]any, from, to string, v any) {
	if _, ok := a[from]; !ok {
		return
	}
	if _, taken := a[to]; taken {
		return
	}
	delete(a, from)
	a[to] = v
}

// moveNumber moves a decimal count from from to to as a number, as move does, and makes a decimal string at
// to (Envoy's semantic-convention names carry strings too) a number. Other values stay where they are.
func moveNumber(a map[string]any, from, to string) {
	if n, ok := decimal(a[from]); ok {
		move(a, from, to, n)
	}
	if n, ok := decimal(a[to]); ok {
		a[to] = n
	}
}

func setAbsent(a map[string]any, k string, v any) {
	if _, ok := a[k]; !ok {
		a[k] = v
	}
}

// decimal reads a non-negative count or status code, sent by Envoy as a decimal string.
func decimal(v any) (int64, bool) {
	switch x := v.(type) {
	case int64:
		return x, x >= 0
	case string:
		if x == "" || len(x) > 15 || x[0] == '+' || x[0] == '-' {
			return 0, false
		}
		n, err := strconv.ParseInt(x, 10, 64)
		return n, err == nil
	}
	return 0, false
}

// envoyURLAttrs adds url.scheme, server.address, server.port and url.path (without the query) from Envoy's
// http.url, "<scheme>://<host><path>" (scheme from x-forwarded-proto, host the :authority).
func envoyURLAttrs(a map[string]any, u string) {
	scheme, rest, ok := strings.Cut(u, "://")
	if !ok {
		return
	}
	if scheme != "" {
		setAbsent(a, "url.scheme", scheme)
	}
	host, path := rest, ""
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		host, path = rest[:i], rest[i:]
	}
	if h, port := splitHostPort(host); h != "" {
		setAbsent(a, "server.address", h)
		if port > 0 {
			setAbsent(a, "server.port", port)
		}
	}
	path, _, _ = strings.Cut(path, "?")
	path, _, _ = strings.Cut(path, "#")
	if path != "" {
		setAbsent(a, "url.path", path)
	}
}

// splitHostPort splits "host", "host:port", "[v6]" or "[v6]:port"; port is 0 when absent or invalid.
func splitHostPort(s string) (host string, port int64) {
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return s, 0
		}
		host, s = s[1:end], s[end+1:]
		if p, ok := strings.CutPrefix(s, ":"); ok {
			port = parsePort(p)
		}
		return host, port
	}
	if strings.Count(s, ":") != 1 {
		return s, 0 // a bare IPv6 address, or no port
	}
	h, p, _ := strings.Cut(s, ":")
	return h, parsePort(p)
}

func parsePort(p string) int64 {
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil || n == 0 {
		return 0
	}
	return int64(n)
}
