package plugin

import (
	"strconv"
	"strings"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/meshtrace/meshtrace/filter/policy"
	"github.com/meshtrace/meshtrace/filter/span"
	tc "github.com/meshtrace/meshtrace/filter/tracecontext"
)

// Property paths read for TCP connections (Envoy attribute names).
var (
	pathDestinationAddress = []string{"destination", "address"}
	pathTerminationDetails = []string{"connection_termination_details"}
	pathTransportFailure   = []string{"upstream", "transport_failure_reason"}
)

// Attributes of the TCP span that OpenTelemetry does not name; they count from the span's side: a CLIENT
// span sends what the local application writes, a SERVER span what the local application answers.
const (
	attrBytesSent     = "meshtrace.tcp.bytes_sent"
	attrBytesReceived = "meshtrace.tcp.bytes_received"
	attrClosedBy      = "meshtrace.tcp.closed_by"
	attrCloseReason   = "meshtrace.tcp.close_reason"
	attrCluster       = "envoy.upstream.cluster"
)

var pathPluginRootID = []string{"plugin_root_id"}

// pluginKind says which filter chain a plugin configuration is loaded into.
type pluginKind uint8

const (
	kindUnresolved pluginKind = iota
	kindHTTP
	kindNetwork
)

// isNetworkFilter reports whether the plugin runs as a network filter, reading the root id once.
func (r *rootContext) isNetworkFilter() bool {
	if r.kind == kindUnresolved {
		r.kind = kindHTTP
		if propertyString(pathPluginRootID) == policy.NetworkRootID {
			r.kind = kindNetwork
		}
	}
	return r.kind == kindNetwork
}

// tcpContext records one span per TCP connection and, when the policy selects the connection, decodes it as
// Kafka. It only reads the bytes and always continues: it never stalls, delays or changes the stream.
type tcpContext struct {
	types.DefaultTcpContext
	root      *rootContext
	span      span.Span
	outbound  bool
	fromDown  int64  // bytes from the downstream (the connection's client)
	fromUp    int64  // bytes from the upstream
	closedBy  string // first close event: downstream, upstream or proxy
	endpoints endpoints
	kafka     *kafkaConn // nil unless the connection is decoded as Kafka
	decided   bool       // whether the Kafka decision was taken
}

// endpoints are the addresses of a connection as the proxy sees them, resolved once.
type endpoints struct {
	peerAddr   string
	peerPort   int64
	serverAddr string
	serverPort int64
	cluster    string
}

func newConnection(r *rootContext, contextID uint32) types.TcpContext {
	return &tcpContext{root: r}
}

// OnNewConnection starts the connection span.
func (c *tcpContext) OnNewConnection() types.Action {
	r := c.root
	c.outbound = r.streamDirection() == policy.DirectionOutbound
	s := &c.span
	s.StartUnixNano = hostNow()
	s.Kind = span.KindServer
	if c.outbound {
		s.Kind = span.KindClient
	}
	s.TraceID = traceID(r.ids.next(), r.ids.next())
	s.SpanID = spanID(r.ids.next())
	s.Flags = uint32(tc.FlagSampled)
	return types.ActionContinue
}

// OnDownstreamData counts (and, for Kafka, decodes) the client's bytes.
func (c *tcpContext) OnDownstreamData(size int, endOfStream bool) types.Action {
	c.fromDown += int64(size)
	if c.decide() && size > 0 {
		c.kafka.in(true, size, proxywasm.GetDownstreamData)
	}
	return types.ActionContinue
}

// OnUpstreamData counts (and, for Kafka, decodes) the server's bytes.
func (c *tcpContext) OnUpstreamData(size int, endOfStream bool) types.Action {
	c.fromUp += int64(size)
	if c.decide() && size > 0 {
		c.kafka.in(false, size, proxywasm.GetUpstreamData)
	}
	return types.ActionContinue
}

// OnDownstreamClose notes who closed first.
func (c *tcpContext) OnDownstreamClose(peer types.PeerType) { c.noteClose("downstream", peer) }

// OnUpstreamClose notes who closed first.
func (c *tcpContext) OnUpstreamClose(peer types.PeerType) { c.noteClose("upstream", peer) }

func (c *tcpContext) noteClose(side string, peer types.PeerType) {
	if c.closedBy != "" {
		return
	}
	if peer == types.PeerTypeLocal {
		side = "proxy"
	}
	c.closedBy = side
}

// OnStreamDone finishes the connection span (and any Kafka exchange still open) and submits it.
func (c *tcpContext) OnStreamDone() {
	now := hostNow()
	ep := c.resolve()
	if c.kafka != nil {
		c.kafka.close(now)
	}
	s := &c.span
	s.EndUnixNano = now
	s.Name = "tcp"
	if ep.serverAddr != "" {
		s.Name = "tcp " + ep.serverAddr
		if ep.serverPort > 0 {
			s.Name += ":" + strconv.FormatInt(ep.serverPort, 10)
		}
	}
	s.Attrs = ep.append(s.Attrs[:0])
	if svc := c.peerService(ep); svc != "" {
		s.Attrs = append(s.Attrs, span.String("peer.service", svc))
	}
	sent, received := c.fromUp, c.fromDown
	if c.outbound {
		sent, received = c.fromDown, c.fromUp
	}
	s.Attrs = append(s.Attrs, span.Int(attrBytesSent, sent), span.Int(attrBytesReceived, received))
	if c.closedBy != "" {
		s.Attrs = append(s.Attrs, span.String(attrClosedBy, c.closedBy))
	}
	reason := firstNonEmpty(propertyString(pathTerminationDetails), propertyString(pathTransportFailure))
	if flags, ok := propertyInt(pathResponseFlags); ok && flags != 0 {
		s.Attrs = append(s.Attrs, span.String("envoy.response_flags", responseFlags(uint64(flags))))
		s.Status = span.StatusError
		reason = firstNonEmpty(reason, responseFlags(uint64(flags)))
	}
	if reason != "" {
		s.Attrs = append(s.Attrs, span.String(attrCloseReason, clip(reason)))
		if s.Status == span.StatusError {
			s.StatusMessage = clip(reason)
		}
	}
	if c.kafka != nil {
		s.Attrs = c.kafka.connectionAttrs(s.Attrs)
	}
	c.root.submit(s)
}

// resolve reads the connection's addresses from the host the first time they are needed (the upstream
// ones exist only once the proxy has connected).
func (c *tcpContext) resolve() *endpoints {
	ep := &c.endpoints
	if ep.cluster == "" {
		ep.cluster = propertyString(pathClusterName)
	}
	if ep.peerAddr == "" {
		path := pathSourceAddress
		if c.outbound {
			path = pathUpstreamAddress
		}
		ep.peerAddr, ep.peerPort = splitHostPort(propertyString(path))
	}
	if ep.serverAddr == "" {
		if c.outbound {
			ep.serverAddr, ep.serverPort = clusterService(ep.cluster)
		}
		if ep.serverAddr == "" {
			ep.serverAddr, ep.serverPort = splitHostPort(propertyString(pathDestinationAddress))
		}
	}
	return ep
}

// append adds the network attributes of the endpoints.
func (ep *endpoints) append(attrs []span.Attr) []span.Attr {
	attrs = append(attrs, span.String("network.transport", "tcp"))
	if ep.peerAddr != "" {
		attrs = append(attrs, span.String("network.peer.address", ep.peerAddr))
		if ep.peerPort > 0 {
			attrs = append(attrs, span.Int("network.peer.port", ep.peerPort))
		}
	}
	if ep.serverAddr != "" {
		attrs = append(attrs, span.String("server.address", ep.serverAddr))
		if ep.serverPort > 0 {
			attrs = append(attrs, span.Int("server.port", ep.serverPort))
		}
	}
	if ep.cluster != "" {
		attrs = append(attrs, span.String(attrCluster, ep.cluster))
	}
	return attrs
}

// peerService names the remote service from the policy: by upstream cluster first, then by server port.
func (c *tcpContext) peerService(ep *endpoints) string {
	services := c.root.policy.Network.PeerServices
	for _, ps := range services {
		if ps.Cluster != "" && ps.Cluster == ep.cluster {
			return ps.Service
		}
	}
	for _, ps := range services {
		if ps.Port != 0 && int64(ps.Port) == ep.serverPort {
			return ps.Service
		}
	}
	return ""
}

// decide reports whether the connection is decoded as Kafka, deciding on the first data: the policy selects
// Kafka by server port or upstream cluster, which the proxy may only know once data flows.
func (c *tcpContext) decide() bool {
	if !c.decided {
		c.decided = true
		k := &c.root.policy.Network.Kafka
		if len(k.Ports) > 0 || len(k.Clusters) > 0 {
			ep := c.resolve()
			if selectsKafka(k, ep) {
				c.kafka = newKafkaConn(c)
			}
		}
	}
	return c.kafka != nil
}

func selectsKafka(k *policy.Kafka, ep *endpoints) bool {
	for _, p := range k.Ports {
		if int64(p) == ep.serverPort {
			return true
		}
	}
	for _, cl := range k.Clusters {
		if cl == ep.cluster {
			return true
		}
	}
	return false
}

// clusterService reads the service host and port out of an Istio cluster name
// ("outbound|9092||kafka.data.svc.cluster.local"); other names yield nothing.
func clusterService(cluster string) (string, int64) {
	parts := strings.Split(cluster, "|")
	if len(parts) != 4 || parts[3] == "" {
		return "", 0
	}
	port, err := strconv.ParseInt(parts[1], 10, 32)
	if err != nil {
		return parts[3], 0
	}
	return parts[3], port
}
