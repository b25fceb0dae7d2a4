package plugin_test

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"strconv"
	"strings"
	"testing"
	"time"

	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	common "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/meshtrace/meshtrace/testenv/artifact"
	"github.com/meshtrace/meshtrace/testenv/wasmhost"
	"github.com/meshtrace/meshtrace/testenv/wasmhost/hosttest"
)

// module compiles a filter build once per test binary.
func module(t testing.TB, b artifact.Build) *wasmhost.Module {
	t.Helper()
	return hosttest.Module(t, b)
}

// forEachBuild runs f as a subtest against the TinyGo and the Go build of the filter.
func forEachBuild(t *testing.T, f func(t *testing.T, m *wasmhost.Module)) {
	t.Helper()
	for _, b := range artifact.Builds(t) {
		t.Run(b.Name, func(t *testing.T) { f(t, module(t, b)) })
	}
}

// clock is a controllable host clock.
type clock struct{ now time.Time }

func (c *clock) Now() time.Time            { return c.now }
func (c *clock) advance(d time.Duration)   { c.now = c.now.Add(d) }
func newClock() *clock                     { return &clock{now: time.Unix(1_700_000_000, 0)} }
func (c *clock) unixNano() uint64          { return uint64(c.now.UnixNano()) }
func intProp(v int64) []byte               { return binary.LittleEndian.AppendUint64(nil, uint64(v)) }
func props(kv ...string) map[string][]byte { return propsOf(kv) }
func propsOf(kv []string) map[string][]byte {
	m := map[string][]byte{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = []byte(kv[i+1])
	}
	return m
}

// env is one loaded filter with a controllable clock.
type env struct {
	t     *testing.T
	h     *wasmhost.Host
	clock *clock
}

// setup loads the filter with policy and host-wide properties (xds.listener_direction defaults to inbound).
func setup(t *testing.T, m *wasmhost.Module, policy string, hostProps map[string][]byte) *env {
	t.Helper()
	c := newClock()
	if hostProps == nil {
		hostProps = map[string][]byte{}
	}
	_, current := hostProps["xds.listener_direction"]
	if _, legacy := hostProps["listener_direction"]; !current && !legacy {
		hostProps["xds.listener_direction"] = intProp(1)
	}
	h, err := m.Load(context.Background(), wasmhost.Config{PluginConfig: []byte(policy), Properties: hostProps, Now: c.Now})
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	t.Cleanup(func() {
		if err := h.Close(context.Background()); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return &env{t: t, h: h, clock: c}
}

// request is one HTTP stream scripted through the host.
type request struct {
	headers  [][2]string
	status   string            // response :status ("" = no response headers)
	props    map[string][]byte // per-stream properties
	duration time.Duration     // clock advance between request and response
}

// do runs a request through the filter and returns the stream (completed) and the request headers the
// filter passed upstream.
func (e *env) do(r request) [][2]string {
	e.t.Helper()
	s := e.h.NewHTTPStream(r.props)
	if a, err := s.RequestHeaders(r.headers, true); err != nil || a != wasmhost.ActionContinue {
		e.t.Fatalf("request headers: action %v, error %v", a, err)
	}
	out := s.RequestHeadersNow()
	e.clock.advance(r.duration)
	if r.status != "" {
		if a, err := s.ResponseHeaders([][2]string{{":status", r.status}}, true); err != nil || a != wasmhost.ActionContinue {
			e.t.Fatalf("response headers: action %v, error %v", a, err)
		}
	}
	if status, ok := s.LocalResponse(); ok {
		e.t.Fatalf("filter sent a local response %d", status)
	}
	if err := s.Complete(); err != nil {
		e.t.Fatalf("complete: %v", err)
	}
	return out
}

// export ticks the filter, answers every pending export call with status and returns the decoded requests.
func (e *env) export(status string) []*coltrace.ExportTraceServiceRequest {
	e.t.Helper()
	if err := e.h.Tick(); err != nil {
		e.t.Fatal(err)
	}
	return e.answer(status)
}

// answer responds to the pending export calls with status and returns their decoded bodies.
func (e *env) answer(status string) []*coltrace.ExportTraceServiceRequest {
	e.t.Helper()
	var out []*coltrace.ExportTraceServiceRequest
	for _, call := range e.h.PendingHTTPCalls() {
		req := &coltrace.ExportTraceServiceRequest{}
		if err := proto.Unmarshal(call.Body, req); err != nil {
			e.t.Fatalf("export body does not decode: %v", err)
		}
		out = append(out, req)
		resp := wasmhost.HTTPCallResponse{Headers: [][2]string{{":status", status}}}
		if status == "" {
			resp = wasmhost.HTTPCallResponse{Failed: true}
		}
		if err := e.h.RespondHTTPCall(call.ID, resp); err != nil {
			e.t.Fatal(err)
		}
	}
	return out
}

// spans exports and returns every span, in order.
func (e *env) spans() []*tracepb.Span {
	e.t.Helper()
	var out []*tracepb.Span
	for _, req := range e.export("200") {
		for _, rs := range req.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				out = append(out, ss.Spans...)
			}
		}
	}
	return out
}

// oneSpan runs r and returns its exported span.
func (e *env) oneSpan(r request) (*tracepb.Span, [][2]string) {
	e.t.Helper()
	out := e.do(r)
	spans := e.spans()
	if len(spans) != 1 {
		e.t.Fatalf("exported %d spans, want 1", len(spans))
	}
	return spans[0], out
}

func (e *env) metric(name string) int64 { return e.h.Metrics()[name] }

// attrs flattens attributes into strings (ints and bools in their text form).
func attrs(kvs []*common.KeyValue) map[string]string {
	m := map[string]string{}
	for _, kv := range kvs {
		switch v := kv.Value.Value.(type) {
		case *common.AnyValue_StringValue:
			m[kv.Key] = v.StringValue
		case *common.AnyValue_IntValue:
			m[kv.Key] = strconv.FormatInt(v.IntValue, 10)
		case *common.AnyValue_BoolValue:
			m[kv.Key] = strconv.FormatBool(v.BoolValue)
		}
	}
	return m
}

func header(h [][2]string, name string) string {
	for _, kv := range h {
		if strings.EqualFold(kv[0], name) {
			return kv[1]
		}
	}
	return ""
}

func hexID(b []byte) string { return hex.EncodeToString(b) }

// standard request headers of a GET through a gateway or sidecar.
func get(extra ...[2]string) [][2]string {
	return append([][2]string{
		{":method", "GET"}, {":path", "/orders/42?x=1"}, {":scheme", "http"}, {":authority", "shop.example:8080"},
		{"user-agent", "curl/8"},
	}, extra...)
}
