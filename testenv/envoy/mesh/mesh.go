// Package mesh runs a small service mesh on loopback for end-to-end tests: a chain of Go HTTP services
// (App) behind Envoy sidecars shaped like Istio's (an INBOUND listener in front of the app, an OUTBOUND
// listener the app calls the next service through, Istio-style cluster names and node metadata), and an
// ingress gateway Envoy in front of the first service. Every Envoy runs the same proxy-wasm plugin and has
// the export cluster the meshtrace filter sends OTLP to by default, pointing at a given collector.
//
//	client -> gateway -> [inbound sidecar-1 -> app-1 -> outbound sidecar-1] -> [inbound sidecar-2 -> app-2] ...
package mesh

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

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
		b := envoy.Bootstrap{
			Node: sidecarNode(name, cfg.Namespace),
			Listeners: []envoy.Listener{{
				Name: InboundListener, Direction: envoy.Inbound, Cluster: inboundCluster,
				Wasm: plugin(cfg.Plugin, cfg.SidecarPolicy),
			}},
			Clusters: []envoy.Cluster{exportCluster, {Name: inboundCluster, Address: app.Addr()}},
		}
		if next != "" {
			nextName := cfg.Services[i+1]
			b.Listeners = append(b.Listeners, envoy.Listener{
				Name: OutboundListener, Direction: envoy.Outbound, Cluster: outboundCluster(nextName, cfg.Namespace),
				Wasm: plugin(cfg.Plugin, cfg.SidecarPolicy),
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
	gw, err := startEnvoy(ctx, cfg, "gateway", envoy.Bootstrap{
		Node: gatewayNode(),
		Listeners: []envoy.Listener{{
			Name: GatewayListener, Direction: envoy.Outbound, Cluster: outboundCluster(first, cfg.Namespace),
			Wasm: plugin(cfg.Plugin, cfg.GatewayPolicy),
		}},
		Clusters: []envoy.Cluster{exportCluster, {Name: outboundCluster(first, cfg.Namespace), Address: next}},
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

func gatewayNode() envoy.Node {
	const ns, name = "istio-system", "istio-ingressgateway"
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
