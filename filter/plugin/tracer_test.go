package plugin_test

import (
	"encoding/hex"
	"testing"

	"github.com/meshtrace/meshtrace/testenv/wasmhost"
)

// Ids an Envoy tracer injects after the filter (the router rewrites the request headers in place).
const (
	tracerTrace = "0af7651916cd43dd8448eb211c80319c"
	tracerSpan  = "b7ad6b7169203331"
)

// TestSpansTakeTheTracersIDs checks filter mode next to an active Envoy tracer: when the request's trace
// context was rewritten after the filter (OpenTelemetry: traceparent; Zipkin: B3), the filter's span takes
// the injected trace and span ids and keeps the parent it joined, so the next hop's spans are its children in
// the tracer's trace; without a tracer the span keeps its own ids. Wasm builds only: the native emulator
// cannot change request headers after the request phase.
func TestSpansTakeTheTracersIDs(t *testing.T) {
	const b3Policy = `{"trace": {"start_new": true, "b3": true}}`
	tests := []struct {
		name, policy string
		in, inject   [][2]string
		wantTrace    string // "" = the filter's own
		wantSpan     string
		wantParent   string
	}{
		{"opentelemetry tracer joined", "", get([2]string{"traceparent", inParent}),
			[][2]string{{"traceparent", "00-" + inTrace + "-" + tracerSpan + "-00"}}, inTrace, tracerSpan, inSpan},
		{"opentelemetry tracer starting the trace at a gateway", `{"direction": "gateway"}`, get(),
			[][2]string{{"traceparent", "00-" + tracerTrace + "-" + tracerSpan + "-00"}}, tracerTrace, tracerSpan, ""},
		{"zipkin tracer, 64-bit trace id", b3Policy, get(),
			[][2]string{{"x-b3-traceid", "8448eb211c80319c"}, {"x-b3-spanid", tracerSpan}, {"x-b3-sampled", "1"}},
			"00000000000000008448eb211c80319c", tracerSpan, ""},
		{"no tracer", "", get([2]string{"traceparent", inParent}), nil, "", "", inSpan},
	}
	forEachBuild(t, func(t *testing.T, m *wasmhost.Module) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				e := setup(t, m, tc.policy, nil)
				s, out := e.oneSpan(request{headers: tc.in, inject: tc.inject, status: "200"})
				own := header(out, "traceparent") // what the filter wrote: its own ids
				if tc.wantTrace == "" {
					if want := "00-" + hex.EncodeToString(s.TraceId) + "-" + hex.EncodeToString(s.SpanId) + "-01"; own != want {
						t.Errorf("span %x/%x, but the filter wrote %s", s.TraceId, s.SpanId, own)
					}
				} else if hex.EncodeToString(s.TraceId) != tc.wantTrace || hex.EncodeToString(s.SpanId) != tc.wantSpan {
					t.Errorf("span %x/%x, want the tracer's %s/%s", s.TraceId, s.SpanId, tc.wantTrace, tc.wantSpan)
				}
				if got := hex.EncodeToString(s.ParentSpanId); got != tc.wantParent {
					t.Errorf("parent %q, want %q", got, tc.wantParent)
				}
			})
		}
	})
}
