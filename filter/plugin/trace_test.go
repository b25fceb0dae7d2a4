package plugin_test

import (
	"strings"
	"testing"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

const (
	inTrace  = "4bf92f3577b34da6a3ce929d0e0e4736"
	inSpan   = "00f067aa0ba902b7"
	inParent = "00-" + inTrace + "-" + inSpan + "-01"
)

// checkChild asserts that s continues the incoming context and that the outgoing traceparent names s.
func checkChild(t *testing.T, s *tracepb.Span, out [][2]string, trace, parent string) {
	t.Helper()
	if hexID(s.TraceId) != trace || hexID(s.ParentSpanId) != parent {
		t.Errorf("span trace/parent = %s/%s, want %s/%s", hexID(s.TraceId), hexID(s.ParentSpanId), trace, parent)
	}
	want := "00-" + trace + "-" + hexID(s.SpanId) + "-01"
	if got := header(out, "traceparent"); got != want {
		t.Errorf("outgoing traceparent = %q, want %q", got, want)
	}
}

func TestJoinTraceContext(t *testing.T) {
	forEachRunner(t, func(t *testing.T, r runner) {
		t.Run("w3c", func(t *testing.T) {
			e := r.setup(t, "", nil)
			s, out := e.oneSpan(request{headers: get([2]string{"traceparent", inParent}, [2]string{"tracestate", "rojo=1,congo=2"}), status: "200"})
			checkChild(t, s, out, inTrace, inSpan)
			if s.TraceState != "rojo=1,congo=2" || header(out, "tracestate") != "rojo=1,congo=2" {
				t.Errorf("tracestate span %q, outgoing %q", s.TraceState, header(out, "tracestate"))
			}
		})
		t.Run("w3c unsampled flag kept", func(t *testing.T) {
			e := r.setup(t, "", nil)
			s, out := e.oneSpan(request{headers: get([2]string{"traceparent", "00-" + inTrace + "-" + inSpan + "-00"}), status: "200"})
			if s.Flags&0xff != 0 || !strings.HasSuffix(header(out, "traceparent"), "-00") {
				t.Errorf("flags %x, outgoing %q", s.Flags, header(out, "traceparent"))
			}
		})
		t.Run("b3 single", func(t *testing.T) {
			r.skipIfManyHeaderWrites(t)
			e := r.setup(t, `{"trace": {"b3": true}}`, nil)
			s, out := e.oneSpan(request{headers: get([2]string{"b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1"}), status: "200"})
			checkChild(t, s, out, "80f198ee56343ba864fe8b2a57d3eff7", "e457b5a2e4d86bd1")
			if want := "80f198ee56343ba864fe8b2a57d3eff7-" + hexID(s.SpanId) + "-1"; header(out, "b3") != want {
				t.Errorf("outgoing b3 = %q, want %q", header(out, "b3"), want)
			}
		})
		t.Run("b3 multi", func(t *testing.T) {
			r.skipIfManyHeaderWrites(t)
			e := r.setup(t, `{"trace": {"b3": true}}`, nil)
			s, out := e.oneSpan(request{headers: get(
				[2]string{"x-b3-traceid", "463ac35c9f6413ad48485a3953bb6124"}, [2]string{"x-b3-spanid", "a2fb4a1d1a96d312"},
				[2]string{"x-b3-sampled", "1"}), status: "200"})
			checkChild(t, s, out, "463ac35c9f6413ad48485a3953bb6124", "a2fb4a1d1a96d312")
			if header(out, "x-b3-spanid") != hexID(s.SpanId) || header(out, "x-b3-parentspanid") != "a2fb4a1d1a96d312" {
				t.Errorf("outgoing b3 ids %q / %q", header(out, "x-b3-spanid"), header(out, "x-b3-parentspanid"))
			}
		})
		t.Run("b3 wins over w3c when enabled", func(t *testing.T) {
			// Behind Envoy's Zipkin tracer only the B3 headers name the previous hop's span.
			r.skipIfManyHeaderWrites(t)
			e := r.setup(t, `{"trace": {"b3": true}}`, nil)
			s, out := e.oneSpan(request{headers: get([2]string{"traceparent", inParent},
				[2]string{"b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1"}), status: "200"})
			checkChild(t, s, out, "80f198ee56343ba864fe8b2a57d3eff7", "e457b5a2e4d86bd1")
		})
		t.Run("b3 ignored unless enabled", func(t *testing.T) {
			e := r.setup(t, `{"trace": {"b3": false}}`, nil)
			s, _ := e.oneSpan(request{headers: get([2]string{"b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1"}), status: "200"})
			if hexID(s.TraceId) == "80f198ee56343ba864fe8b2a57d3eff7" || len(s.ParentSpanId) != 0 {
				t.Errorf("joined B3 although disabled: %v", s)
			}
		})
	})
}

func TestStartNewTrace(t *testing.T) {
	tests := []struct {
		name, policy string
		direction    int64
		wantSpan     bool
	}{
		{"gateway by default", `{"direction": "gateway"}`, 0, true},
		{"inbound by default", "", 1, true},
		{"not outbound by default", "", 2, false},
		{"outbound when enabled", `{"trace": {"start_new": true}}`, 2, true},
		{"never when disabled", `{"direction": "gateway", "trace": {"start_new": false}}`, 0, false},
	}
	forEachRunner(t, func(t *testing.T, r runner) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				e := r.setup(t, tc.policy, map[string][]byte{"xds.listener_direction": intProp(tc.direction)})
				out := e.do(request{headers: get(), status: "200"})
				spans := e.spans()
				if !tc.wantSpan {
					if len(spans) != 0 || header(out, "traceparent") != "" {
						t.Fatalf("started a trace: %d spans, traceparent %q", len(spans), header(out, "traceparent"))
					}
					return
				}
				if len(spans) != 1 {
					t.Fatalf("%d spans", len(spans))
				}
				s := spans[0]
				if len(s.ParentSpanId) != 0 || len(s.TraceId) != 16 || s.Flags&1 != 1 {
					t.Errorf("new root span = %v", s)
				}
				checkChild(t, s, out, hexID(s.TraceId), "")
			})
		}
	})
}

// TestChainFormsOneTree sends a request through a gateway, the inbound and outbound sidecar of service a,
// and the inbound sidecar of service b, each a separate VM, and checks that the spans form one tree.
func TestChainFormsOneTree(t *testing.T) {
	forEachRunner(t, func(t *testing.T, r runner) {
		// One hop loaded at a time: the native runner can hold only one filter.
		hops := []struct {
			policy    string
			direction int64
		}{{`{"direction": "gateway", "service": {"name": "gateway"}}`, 0}, {`{"service": {"name": "a"}}`, 1},
			{`{"service": {"name": "a"}}`, 2}, {`{"service": {"name": "b"}}`, 1}}
		wantKinds := []tracepb.Span_SpanKind{tracepb.Span_SPAN_KIND_SERVER, tracepb.Span_SPAN_KIND_SERVER,
			tracepb.Span_SPAN_KIND_CLIENT, tracepb.Span_SPAN_KIND_SERVER}
		headers := get()
		var parent *tracepb.Span
		for i, hop := range hops {
			var hostProps map[string][]byte
			if hop.direction != 0 {
				hostProps = map[string][]byte{"xds.listener_direction": intProp(hop.direction)}
			}
			e := r.setup(t, hop.policy, hostProps)
			headers = e.do(request{headers: headers, status: "200"})
			spans := e.spans()
			e.close()
			if len(spans) != 1 {
				t.Fatalf("hop %d: %d spans", i, len(spans))
			}
			s := spans[0]
			if s.Kind != wantKinds[i] {
				t.Errorf("hop %d kind %v, want %v", i, s.Kind, wantKinds[i])
			}
			if parent != nil && (hexID(s.TraceId) != hexID(parent.TraceId) || hexID(s.ParentSpanId) != hexID(parent.SpanId)) {
				t.Errorf("hop %d is not a child of hop %d", i, i-1)
			}
			parent = s
		}
	})
}

func TestInvalidTraceContextStartsNewTrace(t *testing.T) {
	bad := []string{
		"00-" + inTrace + "-0000000000000000-01",
		"ff-" + inTrace + "-" + inSpan + "-01",
		"00-" + strings.ToUpper(inTrace) + "-" + inSpan + "-01",
		"garbage",
		strings.Repeat("0", 100000),
	}
	forEachRunner(t, func(t *testing.T, r runner) {
		e := r.setup(t, `{"trace": {"b3": true}}`, nil)
		for _, v := range bad {
			e.do(request{headers: get([2]string{"traceparent", v}, [2]string{"b3", v}), status: "200"})
		}
		spans := e.spans()
		if len(spans) != len(bad) {
			t.Fatalf("%d spans, want %d", len(spans), len(bad))
		}
		for _, s := range spans {
			if hexID(s.TraceId) == inTrace || len(s.ParentSpanId) != 0 {
				t.Errorf("joined an invalid context: %v", s)
			}
		}
	})
}
