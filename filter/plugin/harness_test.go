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

// forEachBuild runs f as a subtest against the TinyGo and the Go build of the filter only: for cases the
// native runner cannot run (see native_test.go), such as export lifecycle, the host clock, TCP and Kafka,
// and guest memory.
func forEachBuild(t *testing.T, f func(t *testing.T, m *wasmhost.Module)) {
	t.Helper()
	for _, b := range artifact.Builds(t) {
		t.Run(b.Name, func(t *testing.T) { f(t, module(t, b)) })
	}
}

// runner is where a case runs: a compiled build on the wazero host, or the plugin's Go code natively on
// the proxytest host emulator (module nil; see native_test.go).
type runner struct {
	name   string
	module *wasmhost.Module
}

// native reports whether r runs the plugin natively.
func (r runner) native() bool { return r.module == nil }

// forEachRunner runs f as a subtest against the plugin package run natively, then against the TinyGo and
// the Go build of the filter (a missing or stale build fails the test after the native run). It is for HTTP
// behaviour cases; forEachBuild is for what needs a real module (memory, lifecycle, ABI) or a host the
// emulator does not offer.
func forEachRunner(t *testing.T, f func(t *testing.T, r runner)) {
	t.Helper()
	t.Run(nativeName, func(t *testing.T) { f(t, runner{name: nativeName}) })
	for _, b := range artifact.Builds(t) {
		t.Run(b.Name, func(t *testing.T) { f(t, runner{name: b.Name, module: module(t, b)}) })
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

// env is one loaded filter: a wasm host with a controllable clock, or (nat set, h nil) a native one.
type env struct {
	t      *testing.T
	h      *wasmhost.Host
	nat    *nativeVM
	clock  *clock
	closed bool // h was closed
}

// setup loads build m with policy and host-wide properties (xds.listener_direction defaults to inbound).
func setup(t *testing.T, m *wasmhost.Module, policy string, hostProps map[string][]byte) *env {
	t.Helper()
	return runner{module: m}.setup(t, policy, hostProps)
}

// setup loads the filter on r with policy and host-wide properties (xds.listener_direction defaults to
// inbound); it fails the test if the plugin does not start. The filter is closed when the test ends.
func (r runner) setup(t *testing.T, policy string, hostProps map[string][]byte) *env {
	t.Helper()
	e, err := r.load(t, policy, hostProps)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	return e
}

// load is setup returning the start error, which names the plugin's problem log lines.
func (r runner) load(t *testing.T, policy string, hostProps map[string][]byte) (*env, error) {
	t.Helper()
	c := newClock()
	if hostProps == nil {
		hostProps = map[string][]byte{}
	}
	_, current := hostProps["xds.listener_direction"]
	if _, legacy := hostProps["listener_direction"]; !current && !legacy {
		hostProps["xds.listener_direction"] = intProp(1)
	}
	if r.native() {
		n, err := loadNative(t, policy, hostProps)
		if err != nil {
			return nil, err
		}
		t.Cleanup(n.close)
		return &env{t: t, nat: n, clock: c}, nil
	}
	h, err := r.module.Load(context.Background(), wasmhost.Config{PluginConfig: []byte(policy), Properties: hostProps, Now: c.Now})
	if err != nil {
		return nil, err
	}
	e := &env{t: t, h: h, clock: c}
	t.Cleanup(e.close)
	return e, nil
}

// close unloads the filter before the test ends, so that the next native one can start; it may be
// called more than once.
func (e *env) close() {
	e.t.Helper()
	if e.nat != nil {
		e.nat.close()
		return
	}
	if e.closed {
		return
	}
	e.closed = true
	if err := e.h.Close(context.Background()); err != nil {
		e.t.Errorf("close: %v", err)
	}
}

// request is one HTTP stream scripted through the host.
type request struct {
	headers  [][2]string
	inject   [][2]string       // request headers set after the filter, as Envoy's router does for its tracer (wasm builds only)
	status   string            // response :status ("" = no response headers)
	props    map[string][]byte // per-stream properties
	duration time.Duration     // clock advance between request and response
}

// do runs a request through the filter and returns the stream (completed) and the request headers the
// filter passed upstream.
func (e *env) do(r request) [][2]string {
	e.t.Helper()
	if e.nat != nil {
		return e.nat.do(e.t, r)
	}
	s := e.h.NewHTTPStream(r.props)
	if a, err := s.RequestHeaders(r.headers, true); err != nil || a != wasmhost.ActionContinue {
		e.t.Fatalf("request headers: action %v, error %v", a, err)
	}
	out := s.RequestHeadersNow()
	for _, kv := range r.inject {
		s.InjectRequestHeader(kv[0], kv[1])
	}
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
	if e.nat != nil {
		e.nat.host.Tick()
		return e.answer(status)
	}
	if err := e.h.Tick(); err != nil {
		e.t.Fatal(err)
	}
	return e.answer(status)
}

// answer responds to the pending export calls with status and returns their decoded bodies.
func (e *env) answer(status string) []*coltrace.ExportTraceServiceRequest {
	e.t.Helper()
	var out []*coltrace.ExportTraceServiceRequest
	if e.nat != nil {
		for _, call := range e.nat.pending() {
			out = append(out, e.decode(call.Body))
			e.nat.respond(call, status)
		}
		return out
	}
	for _, call := range e.h.PendingHTTPCalls() {
		out = append(out, e.decode(call.Body))
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

// decode decodes an export request body.
func (e *env) decode(body []byte) *coltrace.ExportTraceServiceRequest {
	e.t.Helper()
	req := &coltrace.ExportTraceServiceRequest{}
	if err := proto.Unmarshal(body, req); err != nil {
		e.t.Fatalf("export body does not decode: %v", err)
	}
	return req
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

// metric returns the value of a counter the filter defined, 0 if it did not.
func (e *env) metric(name string) int64 {
	if e.nat != nil {
		return e.nat.metric(name)
	}
	return e.h.Metrics()[name]
}

// tickPeriod returns the tick period the filter asked for.
func (e *env) tickPeriod() time.Duration {
	if e.nat != nil {
		return time.Duration(e.nat.host.GetTickPeriod()) * time.Millisecond
	}
	return e.h.TickPeriod()
}

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
