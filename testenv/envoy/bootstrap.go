package envoy

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"text/template"
	"time"
)

// Bootstrap is the static configuration of one Envoy, shaped like an Istio sidecar's or gateway's: HTTP
// listeners (http_connection_manager with an optional Wasm plugin before the router), TCP listeners
// (tcp_proxy with an optional Wasm network filter) and static clusters. The admin endpoint listens on a
// kernel-chosen loopback port.
type Bootstrap struct {
	Node      Node
	Listeners []Listener
	Clusters  []Cluster
	// Runtime, when set, is a static runtime layer (layered_runtime), e.g.
	// {"tracing.opentelemetry.flush_interval_ms": 100}.
	Runtime map[string]any
}

// Node is Envoy's node identity. Istio puts the workload identity in Metadata (NAMESPACE, WORKLOAD_NAME,
// LABELS, ...); plugins read it through the node.metadata.* properties.
type Node struct {
	ID       string
	Cluster  string
	Metadata map[string]any
}

// Direction is a listener's traffic_direction, which plugins read as the listener_direction property.
type Direction string

// Listener directions, as in envoy.config.core.v3.TrafficDirection.
const (
	Unspecified Direction = "UNSPECIFIED"
	Inbound     Direction = "INBOUND"
	Outbound    Direction = "OUTBOUND"
)

// Listener is one listener. An HTTP listener (TCP false) routes every request to Cluster, or answers with
// Direct when set; a TCP listener proxies connections to Cluster.
type Listener struct {
	Name string
	// Address is host:port; empty means 127.0.0.1:0 (read the bound port with Process.ListenerAddr).
	Address   string
	Direction Direction // empty means Unspecified
	TCP       bool
	Cluster   string
	Direct    *DirectResponse
	// Wasm, when set, runs a plugin as the first HTTP filter (or as the network filter of a TCP listener).
	Wasm *Wasm
	// Tracing, when set, turns on Envoy's native tracer on an HTTP listener (http_connection_manager
	// tracing), as Istio's Telemetry API or meshConfig tracing does.
	Tracing *Tracing
}

// TracerProvider is the tracer of a listener's Tracing.
type TracerProvider string

// Tracer providers.
const (
	// OpenTelemetry is envoy.tracers.opentelemetry: W3C traceparent propagation, spans exported over
	// OTLP/gRPC to Tracing.Cluster (which must be HTTP2).
	OpenTelemetry TracerProvider = "opentelemetry"
	// Zipkin is envoy.tracers.zipkin: B3 propagation (x-b3-*), spans posted as Zipkin v2 JSON to
	// Tracing.Cluster.
	Zipkin TracerProvider = "zipkin"
)

// Tracing is the native tracer of an HTTP listener. The connection manager starts a span for every sampled
// request before the HTTP filters run, and the router injects the span's context into the upstream request.
type Tracing struct {
	Provider TracerProvider
	// Cluster is the collector's cluster (OTLP/gRPC for OpenTelemetry, Zipkin HTTP for Zipkin).
	Cluster string
	// ServiceName is OpenTelemetry's resource service.name (Istio: the proxy's cluster,
	// <canonical-name>.<namespace>); ignored by Zipkin, which names the service after the node's cluster.
	ServiceName string
	// RandomSampling is the percent of requests without a sampling decision that are sampled, in (0, 100];
	// 0 means 100 (Envoy's default).
	RandomSampling float64
	// SpawnUpstreamSpan makes the router start a child (client) span for the upstream request and inject
	// that span's context instead of the connection manager's.
	SpawnUpstreamSpan bool
	// CustomTags are span attributes set on every span of the listener.
	CustomTags []CustomTag
	// ZipkinEndpoint is the Zipkin collector path (default /api/v2/spans).
	ZipkinEndpoint string
	// ZipkinHostname is the Host of Zipkin's collector requests (default: the cluster name, which an
	// Istio-style name such as "outbound|9411||zipkin..." makes an invalid Host to most servers).
	ZipkinHostname string
	// SharedSpanContext is Zipkin's shared_span_context (client and server share one span id).
	SharedSpanContext bool
	// OTLPHTTPURI, when set, makes OpenTelemetry export OTLP/HTTP protobuf posts (http_service) to Cluster
	// instead of OTLP/gRPC; the URI's host is the requests' Host and its path their path, e.g.
	// "http://otel-collector:4318/v1/traces". The cluster then speaks HTTP/1.1 (HTTP2 unset).
	OTLPHTTPURI string
}

// CustomTag is one custom_tags entry: the value of a request header when Header is set (Default when the
// request has none), else the literal Literal (Istio's istio.canonical_service, istio.namespace, ...).
type CustomTag struct {
	Tag     string
	Header  string
	Default string
	Literal string
}

// DirectResponse is a fixed reply of an HTTP listener.
type DirectResponse struct {
	Status int
	Body   string
}

// Wasm is a proxy-wasm plugin run by the V8 runtime.
type Wasm struct {
	Name   string // plugin name (Envoy's stats use it: wasm.<Name>.*)
	RootID string
	VMID   string // plugins with the same VMID and File share a VM
	File   string // path of the .wasm module
	Config string // plugin configuration, handed to the plugin as a string (JSON for meshtrace)
	// FailOpen lets traffic pass when the VM has failed (Istio's failStrategy FAIL_OPEN).
	FailOpen bool
	// Env is the VM's environment (vm_config.environment_variables.key_values), which the plugin reads
	// with os.Getenv: e.g. the variables a policy's hmac_key_env and export.token_env name. Istio passes
	// the istio-proxy container's variables instead (host_env_keys); the values end up the same.
	Env map[string]string
}

// Cluster is a static cluster with one endpoint.
type Cluster struct {
	Name           string
	Address        string        // host:port
	ConnectTimeout time.Duration // default 1s
	// HTTP2 makes Envoy speak HTTP/2 (prior knowledge) upstream, as gRPC services need.
	HTTP2 bool
}

//go:embed bootstrap.yaml.tmpl
var bootstrapText string

var bootstrapTemplate = template.Must(template.New("bootstrap").Funcs(template.FuncMap{
	"json": func(v any) (string, error) {
		b, err := json.Marshal(v)
		return string(b), err
	},
}).Parse(bootstrapText))

// renderListener and renderCluster carry the split addresses the template writes.
type renderListener struct {
	Listener
	Host          string
	Port          int
	TracingConfig map[string]any
}

// tracingConfig is a listener's http_connection_manager tracing block as JSON-ready maps.
func tracingConfig(t *Tracing) (map[string]any, error) {
	sampling := t.RandomSampling
	if sampling == 0 {
		sampling = 100
	}
	if sampling < 0 || sampling > 100 {
		return nil, fmt.Errorf("random sampling %v%% out of (0, 100]", t.RandomSampling)
	}
	cfg := map[string]any{
		"random_sampling":     map[string]any{"value": sampling},
		"spawn_upstream_span": t.SpawnUpstreamSpan,
	}
	var tags []map[string]any
	for _, c := range t.CustomTags {
		if c.Tag == "" {
			return nil, errors.New("custom tag without a name")
		}
		if c.Header != "" {
			h := map[string]any{"name": c.Header}
			if c.Default != "" {
				h["default_value"] = c.Default
			}
			tags = append(tags, map[string]any{"tag": c.Tag, "request_header": h})
		} else {
			tags = append(tags, map[string]any{"tag": c.Tag, "literal": map[string]any{"value": c.Literal}})
		}
	}
	if tags != nil {
		cfg["custom_tags"] = tags
	}
	switch t.Provider {
	case OpenTelemetry:
		otel := map[string]any{
			"@type":        "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig",
			"grpc_service": map[string]any{"envoy_grpc": map[string]any{"cluster_name": t.Cluster}, "timeout": "1s"},
		}
		if t.OTLPHTTPURI != "" {
			delete(otel, "grpc_service")
			otel["http_service"] = map[string]any{
				"http_uri": map[string]any{"uri": t.OTLPHTTPURI, "cluster": t.Cluster, "timeout": "1s"},
			}
		}
		if t.ServiceName != "" {
			otel["service_name"] = t.ServiceName
		}
		cfg["provider"] = map[string]any{"name": "envoy.tracers.opentelemetry", "typed_config": otel}
	case Zipkin:
		endpoint := t.ZipkinEndpoint
		if endpoint == "" {
			endpoint = "/api/v2/spans"
		}
		zipkin := map[string]any{
			"@type":                      "type.googleapis.com/envoy.config.trace.v3.ZipkinConfig",
			"collector_cluster":          t.Cluster,
			"collector_endpoint":         endpoint,
			"collector_endpoint_version": "HTTP_JSON",
			"shared_span_context":        t.SharedSpanContext,
		}
		if t.ZipkinHostname != "" {
			zipkin["collector_hostname"] = t.ZipkinHostname
		}
		cfg["provider"] = map[string]any{"name": "envoy.tracers.zipkin", "typed_config": zipkin}
	default:
		return nil, fmt.Errorf("unknown tracer provider %q", t.Provider)
	}
	return cfg, nil
}

type renderCluster struct {
	Cluster
	Host                  string
	Port                  int
	ConnectTimeoutSeconds string
}

// Render returns the bootstrap as YAML.
func (b Bootstrap) Render() ([]byte, error) {
	data := struct {
		Node      Node
		Listeners []renderListener
		Clusters  []renderCluster
		Runtime   map[string]any
	}{Node: b.Node, Runtime: b.Runtime}
	if data.Node.ID == "" {
		data.Node.ID = "meshtrace-test"
	}
	if data.Node.Cluster == "" {
		data.Node.Cluster = data.Node.ID
	}
	clusters := make(map[string]bool, len(b.Clusters))
	for _, c := range b.Clusters {
		if c.Name == "" || clusters[c.Name] {
			return nil, fmt.Errorf("envoy: cluster name %q empty or repeated", c.Name)
		}
		clusters[c.Name] = true
		host, port, err := splitHostPort(c.Address)
		if err != nil {
			return nil, fmt.Errorf("envoy: cluster %q: %w", c.Name, err)
		}
		timeout := c.ConnectTimeout
		if timeout <= 0 {
			timeout = time.Second
		}
		data.Clusters = append(data.Clusters, renderCluster{
			Cluster: c, Host: host, Port: port,
			ConnectTimeoutSeconds: strconv.FormatFloat(timeout.Seconds(), 'f', -1, 64),
		})
	}
	for _, l := range b.Listeners {
		if l.Name == "" {
			return nil, errors.New("envoy: listener without a name")
		}
		if l.Direction == "" {
			l.Direction = Unspecified
		}
		if l.Address == "" {
			l.Address = "127.0.0.1:0"
		}
		if (l.Direct == nil || l.TCP) && !clusters[l.Cluster] {
			return nil, fmt.Errorf("envoy: listener %q: unknown cluster %q", l.Name, l.Cluster)
		}
		host, port, err := splitHostPort(l.Address)
		if err != nil {
			return nil, fmt.Errorf("envoy: listener %q: %w", l.Name, err)
		}
		rl := renderListener{Listener: l, Host: host, Port: port}
		if l.Tracing != nil {
			if l.TCP {
				return nil, fmt.Errorf("envoy: listener %q: tracing needs an HTTP listener", l.Name)
			}
			if !clusters[l.Tracing.Cluster] {
				return nil, fmt.Errorf("envoy: listener %q: unknown tracing cluster %q", l.Name, l.Tracing.Cluster)
			}
			if rl.TracingConfig, err = tracingConfig(l.Tracing); err != nil {
				return nil, fmt.Errorf("envoy: listener %q: %w", l.Name, err)
			}
		}
		data.Listeners = append(data.Listeners, rl)
	}
	var out bytes.Buffer
	if err := bootstrapTemplate.Execute(&out, data); err != nil {
		return nil, fmt.Errorf("envoy: render bootstrap: %w", err)
	}
	return out.Bytes(), nil
}

func splitHostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("bad port in %q", addr)
	}
	return host, port, nil
}
