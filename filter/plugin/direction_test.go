package plugin_test

import (
	"strings"
	"testing"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

const (
	gatewayNode = "router~10.1.2.3~istio-ingressgateway-5d8f.istio-system~istio-system.svc.cluster.local"
	sidecarNode = "sidecar~10.1.2.4~frontend-7c9.shop~shop.svc.cluster.local"
)

// TestDirectionResolvedAtStart checks the directions that resolve once at plugin start: "client" (the CLIENT
// side of an Istio WasmPlugin) runs as outbound on a sidecar and as gateway on an Istio gateway (node id
// router~...), and "auto" runs as gateway on a gateway. The host serves a listener direction that
// contradicts the expected one (inbound, under both the current and the older name), so a filter that read
// it per stream would record the wrong span kind. The resolved direction also decides baggage trust and
// shows in the start log line.
func TestDirectionResolvedAtStart(t *testing.T) {
	policyWith := func(dir string) string {
		return `{"direction": "` + dir + `", "tags": [` + customerTag + `]}`
	}
	tests := []struct {
		name, direction, node string
		listener              int64 // listener_direction the host serves: 1 inbound, 2 outbound
		kind                  tracepb.Span_SpanKind
		trusted               bool   // incoming baggage believed
		logged                string // the start log line names this direction
	}{
		{"client on a sidecar", "client", sidecarNode, 1, tracepb.Span_SPAN_KIND_CLIENT, true, "direction outbound"},
		{"client without a node id", "client", "", 1, tracepb.Span_SPAN_KIND_CLIENT, true, "direction outbound"},
		{"client on a gateway, outbound listener", "client", gatewayNode, 2, tracepb.Span_SPAN_KIND_SERVER, false, "direction gateway"},
		{"client on a gateway, inbound listener", "client", gatewayNode, 1, tracepb.Span_SPAN_KIND_SERVER, false, "direction gateway"},
		{"auto on a gateway", "auto", gatewayNode, 2, tracepb.Span_SPAN_KIND_SERVER, false, "direction gateway"},
		{"auto on a sidecar reads the listener", "auto", sidecarNode, 1, tracepb.Span_SPAN_KIND_SERVER, true, "direction auto"},
	}
	forEachRunner(t, func(t *testing.T, r runner) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				props := map[string][]byte{"xds.listener_direction": intProp(tc.listener), "listener_direction": intProp(tc.listener)}
				if tc.node != "" {
					props["xds.node.id"] = []byte(tc.node)
				}
				e := r.setup(t, policyWith(tc.direction), props)
				s, out := e.oneSpan(request{status: "200",
					headers: get([2]string{"traceparent", inParent}, [2]string{"baggage", "customer_id=999"})})
				if s.Kind != tc.kind {
					t.Errorf("kind %v, want %v", s.Kind, tc.kind)
				}
				want := map[string]string{"baggage": "customer_id=999", "x-meshtrace-customer-id": "999"}
				if !tc.trusted {
					want = map[string]string{"baggage": absent, "x-meshtrace-customer-id": absent}
				}
				checkOut(t, out, want)
				if r.native() {
					return // the native emulator's info logs are not kept by the harness
				}
				var started bool
				for _, l := range e.h.Logs() {
					if strings.Contains(l.Message, "meshtrace: started") {
						started = true
						if !strings.Contains(l.Message, tc.logged) {
							t.Errorf("start log %q does not name %q", l.Message, tc.logged)
						}
					}
				}
				if !started {
					t.Errorf("no start log line in %v", e.h.Logs())
				}
			})
		}
	})
}
