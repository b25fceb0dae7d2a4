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
}

// Cluster is a static cluster with one endpoint.
type Cluster struct {
	Name           string
	Address        string        // host:port
	ConnectTimeout time.Duration // default 1s
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
	Host string
	Port int
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
	}{Node: b.Node}
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
		data.Listeners = append(data.Listeners, renderListener{Listener: l, Host: host, Port: port})
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
