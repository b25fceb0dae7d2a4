package plugin_test

import (
	"bytes"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/meshtrace/meshtrace/testenv/wasmhost"
)

const networkPolicy = `{
  "network": {
    "peer_services": [{"port": 5432, "service": "postgres"},
                      {"cluster": "outbound|9092||kafka.data.svc.cluster.local", "service": "kafka"}],
    "kafka": {"ports": [9092], "record_key": true}
  },
  "tags": [{"attribute": "customer_id", "from": [{"record_header": "x-customer-id"}, {"baggage": "customer_id"}],
            "regex": "^(?:cust-)?([0-9]+)$"}]
}`

// TestTCPSpan checks the connection span of an outbound and an inbound connection: kind, endpoints, peer
// service, byte counts from the span's side, duration, who closed and why, and an untouched byte stream.
func TestTCPSpan(t *testing.T) {
	cases := []struct {
		name      string
		direction int64
		props     map[string][]byte
		kind      tracepb.Span_SpanKind
		spanName  string
		want      map[string]string
		status    tracepb.Status_StatusCode
	}{
		{
			name: "outbound", direction: 2, kind: tracepb.Span_SPAN_KIND_CLIENT, spanName: "tcp db.data.svc.cluster.local:5432",
			props: props("source.address", "10.0.0.9:41000", "destination.address", "10.96.0.20:5432",
				"upstream.address", "10.0.3.4:5432", "xds.cluster_name", "outbound|5432||db.data.svc.cluster.local"),
			want: map[string]string{
				"network.transport": "tcp", "network.peer.address": "10.0.3.4", "network.peer.port": "5432",
				"server.address": "db.data.svc.cluster.local", "server.port": "5432",
				"envoy.upstream.cluster": "outbound|5432||db.data.svc.cluster.local", "peer.service": "postgres",
				"meshtrace.tcp.bytes_sent": "100", "meshtrace.tcp.bytes_received": "250",
				"meshtrace.tcp.closed_by": "downstream",
			},
		},
		{
			name: "inbound with upstream failure", direction: 1, kind: tracepb.Span_SPAN_KIND_SERVER, spanName: "tcp 10.0.3.4:5432",
			props: map[string][]byte{
				"source.address": []byte("10.0.0.9:41000"), "destination.address": []byte("10.0.3.4:5432"),
				"xds.cluster_name": []byte("inbound|5432||"), "response.flags": intProp(1 << 5), // UF
				"connection_termination_details": []byte("upstream connect error"),
			},
			want: map[string]string{
				"network.transport": "tcp", "network.peer.address": "10.0.0.9", "network.peer.port": "41000",
				"server.address": "10.0.3.4", "server.port": "5432", "peer.service": "postgres",
				"meshtrace.tcp.bytes_sent": "250", "meshtrace.tcp.bytes_received": "100",
				"meshtrace.tcp.closed_by": "downstream", "envoy.response_flags": "UF",
				"meshtrace.tcp.close_reason": "upstream connect error",
			},
			status: tracepb.Status_STATUS_CODE_ERROR,
		},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			forEachBuild(t, func(t *testing.T, m *wasmhost.Module) {
				e := setup(t, m, networkPolicy, networkHost(tt.direction))
				start := e.clock.unixNano()
				c := e.connect(tt.props)
				e.downstream(c, bytes.Repeat([]byte("q"), 60))
				e.upstream(c, bytes.Repeat([]byte("r"), 250))
				e.clock.advance(3 * time.Second)
				e.downstream(c, bytes.Repeat([]byte("q"), 40))
				if err := c.Close(wasmhost.PeerRemote); err != nil {
					t.Fatal(err)
				}
				spans := e.spans()
				if len(spans) != 1 {
					t.Fatalf("exported %d spans, want 1", len(spans))
				}
				s := spans[0]
				if s.Kind != tt.kind || s.Name != tt.spanName {
					t.Errorf("span %q kind %v, want %q %v", s.Name, s.Kind, tt.spanName, tt.kind)
				}
				if s.StartTimeUnixNano != start || s.EndTimeUnixNano != start+uint64(3*time.Second) {
					t.Errorf("span time %d..%d, want %d..+3s", s.StartTimeUnixNano, s.EndTimeUnixNano, start)
				}
				got := attrs(s.Attributes)
				for k, v := range tt.want {
					if got[k] != v {
						t.Errorf("%s = %q, want %q", k, got[k], v)
					}
				}
				if code := s.GetStatus().GetCode(); code != tt.status {
					t.Errorf("status %v, want %v", code, tt.status)
				}
				if msg := s.GetStatus().GetMessage(); (msg != "") != (tt.status == tracepb.Status_STATUS_CODE_ERROR) {
					t.Errorf("status message %q with status %v", msg, tt.status)
				}
				if len(s.TraceId) != 16 || len(s.SpanId) != 8 || len(s.ParentSpanId) != 0 {
					t.Errorf("ids: trace %x span %x parent %x", s.TraceId, s.SpanId, s.ParentSpanId)
				}
				if n := e.h.LiveContexts(); n != 1 {
					t.Errorf("%d live contexts after close, want 1 (the root)", n)
				}
			})
		})
	}
}

// networkHost returns the host properties of the filter loaded as a network filter on a listener of the given
// direction (1 inbound, 2 outbound).
func networkHost(direction int64) map[string][]byte {
	return map[string][]byte{"xds.listener_direction": intProp(direction), "plugin_root_id": []byte("meshtrace-network")}
}

// connect opens a connection and checks that the filter lets it through.
func (e *env) connect(p map[string][]byte) *wasmhost.Connection {
	e.t.Helper()
	c, a, err := e.h.NewConnection(p)
	if err != nil || a != wasmhost.ActionContinue {
		e.t.Fatalf("new connection: action %v, error %v", a, err)
	}
	return c
}

// downstream passes client bytes and checks they went on unchanged and undelayed.
func (e *env) downstream(c *wasmhost.Connection, b []byte) {
	e.t.Helper()
	a, err := c.DownstreamData(b, false)
	if err != nil || a != wasmhost.ActionContinue {
		e.t.Fatalf("downstream data: action %v, error %v", a, err)
	}
	if !bytes.Equal(c.DownstreamDataNow(), b) {
		e.t.Fatal("the filter changed downstream data")
	}
}

// upstream passes server bytes and checks they went on unchanged and undelayed.
func (e *env) upstream(c *wasmhost.Connection, b []byte) {
	e.t.Helper()
	a, err := c.UpstreamData(b, false)
	if err != nil || a != wasmhost.ActionContinue {
		e.t.Fatalf("upstream data: action %v, error %v", a, err)
	}
	if !bytes.Equal(c.UpstreamDataNow(), b) {
		e.t.Fatal("the filter changed upstream data")
	}
}
