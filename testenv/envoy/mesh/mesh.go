// Package mesh runs a small service mesh on loopback for end-to-end tests: a chain of Go HTTP services
// (App) behind Envoy sidecars shaped like Istio's (an INBOUND listener in front of the app, an OUTBOUND
// listener the app calls the next service through, Istio-style cluster names and node metadata), and an
// ingress gateway Envoy in front of the first service. Every Envoy runs the same proxy-wasm plugin and has
// the export cluster the meshtrace filter sends OTLP to by default, pointing at a given collector. With
// Config.Tracing every HTTP listener also runs Envoy's native tracer (OpenTelemetry or Zipkin), as Istio's
// Telemetry API configures it.
//
//	client -> gateway -> [inbound sidecar-1 -> app-1 -> outbound sidecar-1] -> [inbound sidecar-2 -> app-2] ...
package mesh

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/meshtrace/meshtrace/filter/policy"
	"github.com/meshtrace/meshtrace/testenv/envoy"
)

// ExportCluster is the cluster name every Envoy defines for the collector: the filter's default export
// cluster (what Istio names the indexer's OTLP port).
const ExportCluster = policy.DefaultCluster

// Listener names.
const (
	GatewayListener  = "gateway"
	InboundListener  = "inbound"
	OutboundListener = "outbound"
)

// Config describes the mesh.
type Config struct {
	Plugin        string   // .wasm file every Envoy runs as an HTTP filter
	SidecarPolicy string   // plugin configuration of the sidecars
	GatewayPolicy string   // plugin configuration of the gateway
	Collector     string   // host:port of the OTLP/HTTP receiver behind ExportCluster
	Services      []string // the chain behind the gateway, in call order
	Namespace     string   // Kubernetes namespace in the node metadata (default "default")
	Dir           string   // working directory; each Envoy gets a subfolder
	Envoy         envoy.Options
	// Tracing, when set, turns on Envoy's native tracer on every HTTP listener (gateway, inbound and
	// outbound), as Istio's Telemetry API does with a tracing provider.
	Tracing *Tracing
}

// TracerCluster is the cluster every Envoy defines for Envoy's tracer when Config.Tracing is set (what
// Istio names an extension provider's service).
const TracerCluster = "outbound|4317||tracer.istio-system.svc.cluster.local"

// tracerHost is the Host of the tracer's requests (Zipkin's collector_hostname), the service TracerCluster names.
const tracerHost = "tracer.istio-system.svc.cluster.local"

// MeshID is the mesh id Istio's tracing tags carry (istio.mesh_id).
const MeshID = "cluster.local"

// Tracing is Envoy's tracer as Istio configures it from a Telemetry resource: the provider, the sampling
// percentage and custom tags from request headers. Like Istio, every Envoy also tags its spans with the
// literals istio.canonical_service, istio.canonical_revision, istio.namespace and istio.mesh_id, and the
// OpenTelemetry resource service.name is the proxy's cluster ("<canonical-name>.<namespace>").
type Tracing struct {
	Provider envoy.TracerProvider
	// Collector is the host:port of the tracer's receiver: OTLP/gRPC for envoy.OpenTelemetry, Zipkin HTTP
	// for envoy.Zipkin.
	Collector string
	// RandomSampling is the percent of requests sampled (Telemetry randomSamplingPercentage); 0 means 100.
	RandomSampling float64
	// SpawnUpstreamSpan makes each router start a client span for its upstream request.
	SpawnUpstreamSpan bool
	// HeaderTags are custom tags from request headers, span attribute -> header name (Telemetry
	// tracing[].customTags.<tag>.header.name).
	HeaderTags map[string]string
}

// tracing returns the listener tracing of an Envoy whose node is n, canonical service name in namespace.
func (t *Tracing) tracing(n envoy.Node, name, namespace, revision string) *envoy.Tracing {
	if t == nil {
		return nil
	}
	tags := make([]envoy.CustomTag, 0, len(t.HeaderTags)+4)
	for tag, header := range t.HeaderTags {
		tags = append(tags, envoy.CustomTag{Tag: tag, Header: header})
	}
	sort.Slice(tags, func(i, j int) bool { return tags[i].Tag < tags[j].Tag })
	tags = append(tags,
		envoy.CustomTag{Tag: "istio.canonical_service", Literal: name},
		envoy.CustomTag{Tag: "istio.canonical_revision", Literal: revision},
		envoy.CustomTag{Tag: "istio.namespace", Literal: namespace},
		envoy.CustomTag{Tag: "istio.mesh_id", Literal: MeshID},
	)
	return &envoy.Tracing{
		Provider: t.Provider, Cluster: TracerCluster, ServiceName: n.Cluster,
		RandomSampling: t.RandomSampling, SpawnUpstreamSpan: t.SpawnUpstreamSpan, CustomTags: tags,
		ZipkinHostname: tracerHost,
	}
}

// cluster returns the tracer's cluster (nil without tracing).
func (t *Tracing) cluster() []envoy.Cluster {
	if t == nil {
		return nil
	}
	return []envoy.Cluster{{Name: TracerCluster, Address: t.Collector, HTTP2: t.Provider == envoy.OpenTelemetry}}
}

// runtime returns the settings that make Envoy's tracers flush every 100 ms (Envoy's default is 5 s), so
// tests need not wait for their spans (nil without tracing).
func (t *Tracing) runtime() map[string]any {
	if t == nil {
		return nil
	}
	return map[string]any{
		"tracing.opentelemetry.flush_interval_ms": 100,
		"tracing.opentelemetry.min_flush_spans":   1,
		"tracing.zipkin.flush_interval_ms":        100,
		"tracing.zipkin.min_flush_spans":          1,
	}
}

// Mesh is a running mesh.
type Mesh struct {
	// GatewayAddr is the host:port clients send requests to.
	GatewayAddr string
	Gateway     *envoy.Process
	Sidecars    map[string]*envoy.Process // by service name
	Apps        map[string]*App           // by service name
}

// Start starts the apps, the sidecars (last service first, so each outbound cluster knows its target's
// address) and the gateway. On error everything started so far is stopped.
func Start(ctx context.Context, cfg Config) (m *Mesh, err error) {
	if len(cfg.Services) == 0 {
		return nil, errors.New("mesh: no services")
	}
	if cfg.Namespace == "" {
		cfg.Namespace = "default"
	}
	m = &Mesh{Sidecars: make(map[string]*envoy.Process), Apps: make(map[string]*App)}
	defer func() {
		if err != nil {
			_ = m.Close()
			m = nil
		}
	}()
	for _, name := range cfg.Services {
		if _, dup := m.Apps[name]; dup {
			return nil, fmt.Errorf("mesh: service %q twice", name)
		}
		app, err := newApp(name)
		if err != nil {
			return nil, err
		}
		m.Apps[name] = app
	}

	exportCluster := envoy.Cluster{Name: ExportCluster, Address: cfg.Collector}
	next := "" // inbound address of the next service's sidecar
	for i := len(cfg.Services) - 1; i >= 0; i-- {
		name := cfg.Services[i]
		app := m.Apps[name]
		node := sidecarNode(name, cfg.Namespace)
		tracing := cfg.Tracing.tracing(node, name, cfg.Namespace, "v1")
		b := envoy.Bootstrap{
			Node: node,
			Listeners: []envoy.Listener{{
				Name: InboundListener, Direction: envoy.Inbound, Cluster: inboundCluster,
				Wasm: plugin(cfg.Plugin, cfg.SidecarPolicy), Tracing: tracing,
			}},
			Clusters: append([]envoy.Cluster{exportCluster, {Name: inboundCluster, Address: app.Addr()}}, cfg.Tracing.cluster()...),
			Runtime:  cfg.Tracing.runtime(),
		}
		if next != "" {
			nextName := cfg.Services[i+1]
			b.Listeners = append(b.Listeners, envoy.Listener{
				Name: OutboundListener, Direction: envoy.Outbound, Cluster: outboundCluster(nextName, cfg.Namespace),
				Wasm: plugin(cfg.Plugin, cfg.SidecarPolicy), Tracing: tracing,
			})
			b.Clusters = append(b.Clusters, envoy.Cluster{Name: outboundCluster(nextName, cfg.Namespace), Address: next})
		}
		p, err := startEnvoy(ctx, cfg, "sidecar-"+name, b)
		if err != nil {
			return nil, err
		}
		m.Sidecars[name] = p
		if next != "" {
			if app.next, err = p.ListenerAddr(ctx, OutboundListener); err != nil {
				return nil, err
			}
			app.nextSv = cfg.Services[i+1]
		}
		if next, err = p.ListenerAddr(ctx, InboundListener); err != nil {
			return nil, err
		}
		app.serve()
	}

	first := cfg.Services[0]
	gwNode := gatewayNode()
	gw, err := startEnvoy(ctx, cfg, "gateway", envoy.Bootstrap{
		Node: gwNode,
		Listeners: []envoy.Listener{{
			Name: GatewayListener, Direction: envoy.Outbound, Cluster: outboundCluster(first, cfg.Namespace),
			Wasm:    plugin(cfg.Plugin, cfg.GatewayPolicy),
			Tracing: cfg.Tracing.tracing(gwNode, gatewayName, gatewayNamespace, "latest"),
		}},
		Clusters: append([]envoy.Cluster{exportCluster, {Name: outboundCluster(first, cfg.Namespace), Address: next}}, cfg.Tracing.cluster()...),
		Runtime:  cfg.Tracing.runtime(),
	})
	if err != nil {
		return nil, err
	}
	m.Gateway = gw
	if m.GatewayAddr, err = gw.ListenerAddr(ctx, GatewayListener); err != nil {
		return nil, err
	}
	return m, nil
}

// Envoys returns every Envoy by name ("gateway", "sidecar-<service>").
func (m *Mesh) Envoys() map[string]*envoy.Process {
	all := make(map[string]*envoy.Process, len(m.Sidecars)+1)
	if m.Gateway != nil {
		all["gateway"] = m.Gateway
	}
	for name, p := range m.Sidecars {
		all["sidecar-"+name] = p
	}
	return all
}

// Close stops the Envoys and the apps.
func (m *Mesh) Close() error {
	var errs []error
	for _, p := range m.Envoys() {
		errs = append(errs, p.Close())
	}
	for _, a := range m.Apps {
		errs = append(errs, a.close())
	}
	return errors.Join(errs...)
}

func startEnvoy(ctx context.Context, cfg Config, name string, b envoy.Bootstrap) (*envoy.Process, error) {
	opts := cfg.Envoy
	opts.Dir = filepath.Join(cfg.Dir, name)
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, err
	}
	p, err := envoy.Start(ctx, b, opts)
	if err != nil {
		return nil, fmt.Errorf("mesh: %s: %w", name, err)
	}
	return p, nil
}

func plugin(file, config string) *envoy.Wasm {
	return &envoy.Wasm{Name: "meshtrace", VMID: "meshtrace", File: file, Config: config}
}

// sidecarNode is the node identity istio-agent gives a sidecar of the workload name.
func sidecarNode(name, namespace string) envoy.Node {
	pod := name + "-6d5f8c7b9-x2x4k"
	return envoy.Node{
		ID:      "sidecar~127.0.0.1~" + pod + "." + namespace + "~" + namespace + ".svc.cluster.local",
		Cluster: name + "." + namespace,
		Metadata: map[string]any{
			"NAME":          pod,
			"NAMESPACE":     namespace,
			"WORKLOAD_NAME": name,
			"LABELS": map[string]any{
				"app":                                 name,
				"service.istio.io/canonical-name":     name,
				"service.istio.io/canonical-revision": "v1",
			},
		},
	}
}

// The ingress gateway's workload (its canonical service is the app label) and namespace.
const (
	gatewayName      = "istio-ingressgateway"
	gatewayNamespace = "istio-system"
)

func gatewayNode() envoy.Node {
	const ns, name = gatewayNamespace, gatewayName
	pod := name + "-7c9d8b6f5-k8k2p"
	return envoy.Node{
		ID:      "router~127.0.0.1~" + pod + "." + ns + "~" + ns + ".svc.cluster.local",
		Cluster: name + "." + ns,
		Metadata: map[string]any{
			"NAME":          pod,
			"NAMESPACE":     ns,
			"WORKLOAD_NAME": name,
			"LABELS":        map[string]any{"app": name, "istio": "ingressgateway"},
		},
	}
}

// inboundCluster is Istio's name for the cluster of the local app (inbound|<port>||).
const inboundCluster = "inbound|8080||"

// outboundCluster is Istio's name for a service's cluster (outbound|<port>||<fqdn>).
func outboundCluster(service, namespace string) string {
	return "outbound|80||" + service + "." + namespace + ".svc.cluster.local"
}
