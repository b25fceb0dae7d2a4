package policy

import (
	"strconv"
	"strings"

	"github.com/valyala/fastjson"
)

// The policy's network section: the TCP spans' peer services, the Kafka decoder, and what leaves the mesh.

// PeerService names the remote service of a TCP connection by port or by upstream cluster.
type PeerService struct {
	Port    int
	Cluster string
	Service string
}

// Kafka selects connections parsed as Kafka.
type Kafka struct {
	Ports     []int
	Clusters  []string
	RecordKey bool // record messaging.kafka.message.key
}

// Network configures TCP and Kafka spans.
type Network struct {
	PeerServices []PeerService
	Kafka        Kafka
}

// MaxEgressHosts bounds egress.hosts.
const MaxEgressHosts = 64

// Egress names the destinations outside the mesh that must not receive what the filter adds to requests.
type Egress struct {
	// Hosts are :authority host names ("api.stripe.com") or suffix patterns ("*.stripe.com"), lower case.
	Hosts []string
}

// LeavesMesh reports whether a request to host (an :authority without port) goes to one of the Hosts.
func (e *Egress) LeavesMesh(host string) bool {
	for _, h := range e.Hosts {
		if suffix, ok := strings.CutPrefix(h, "*"); ok {
			if strings.HasSuffix(host, suffix) && len(host) > len(suffix) {
				return true
			}
		} else if host == h {
			return true
		}
	}
	return false
}

func (d *decoder) network(v *fastjson.Value, path string, n *Network) {
	d.object(v, path, func(key string, v *fastjson.Value, path string) bool {
		switch key {
		case "peer_services":
			d.array(v, path, func(i int, v *fastjson.Value, path string) {
				n.PeerServices = append(n.PeerServices, d.peerService(v, path))
			})
		case "kafka":
			d.kafka(v, path, &n.Kafka)
		default:
			return false
		}
		return true
	})
}

func (d *decoder) egress(v *fastjson.Value, path string, e *Egress) {
	d.object(v, path, func(key string, v *fastjson.Value, path string) bool {
		if key != "hosts" {
			return false
		}
		d.array(v, path, func(i int, v *fastjson.Value, path string) {
			if i >= MaxEgressHosts {
				d.fail(path, "too many hosts: the limit is "+strconv.Itoa(MaxEgressHosts))
				return
			}
			h := d.nonEmpty(v, path)
			name := strings.TrimPrefix(h, "*.")
			switch {
			case d.err != nil:
			case h != strings.ToLower(h):
				d.fail(path, "must be lower case")
			case name == "" || strings.ContainsAny(name, "*:/ "):
				d.fail(path, `must be a host name or "*." and a host name`)
			default:
				e.Hosts = append(e.Hosts, h) // "*.x" matches the hosts ending in ".x"
			}
		})
		return true
	})
}

func (d *decoder) peerService(v *fastjson.Value, path string) PeerService {
	var ps PeerService
	d.object(v, path, func(key string, v *fastjson.Value, path string) bool {
		switch key {
		case "port":
			ps.Port = d.port(v, path)
		case "cluster":
			ps.Cluster = d.nonEmpty(v, path)
		case "service":
			ps.Service = d.nonEmpty(v, path)
		default:
			return false
		}
		return true
	})
	switch {
	case d.err != nil:
	case ps.Service == "":
		d.fail(path+".service", "is required")
	case (ps.Port == 0) == (ps.Cluster == ""):
		d.fail(path, "must have exactly one of port, cluster")
	}
	return ps
}

func (d *decoder) kafka(v *fastjson.Value, path string, k *Kafka) {
	d.object(v, path, func(key string, v *fastjson.Value, path string) bool {
		switch key {
		case "ports":
			d.array(v, path, func(i int, v *fastjson.Value, path string) { k.Ports = append(k.Ports, d.port(v, path)) })
		case "clusters":
			d.array(v, path, func(i int, v *fastjson.Value, path string) {
				k.Clusters = append(k.Clusters, d.nonEmpty(v, path))
			})
		case "record_key":
			k.RecordKey = d.boolean(v, path)
		default:
			return false
		}
		return true
	})
}
