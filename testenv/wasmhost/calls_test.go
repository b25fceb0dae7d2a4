package wasmhost_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/testenv/wasmhost"
)

func TestHTTPCallFromStream(t *testing.T) {
	tests := []struct {
		name       string
		resp       wasmhost.HTTPCallResponse
		wantHeader string
	}{
		{"answered", wasmhost.HTTPCallResponse{Headers: [][2]string{{":status", "200"}}, Body: []byte("ok")}, "200"},
		{"denied", wasmhost.HTTPCallResponse{Headers: [][2]string{{":status", "403"}}}, "403"},
		{"failed", wasmhost.HTTPCallResponse{Headers: [][2]string{{":status", "200"}}, Failed: true}, "failed"},
	}
	forEachBuild(t, func(t *testing.T, m *wasmhost.Module) {
		h := load(t, m, wasmhost.Config{})
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				s := h.NewHTTPStream(nil)
				a, err := s.RequestHeaders([][2]string{{"x-op", "call"}}, true)
				if err != nil || a != wasmhost.ActionPause {
					t.Fatalf("RequestHeaders = %v, %v; want pause while the call is out", a, err)
				}
				calls := h.PendingHTTPCalls()
				if len(calls) != 1 {
					t.Fatalf("pending calls = %+v, want 1", calls)
				}
				c := calls[0]
				wantHeaders := [][2]string{{":method", "GET"}, {":path", "/authz"}, {":authority", "authz"}}
				if c.Cluster != "authz" || !slices.Equal(c.Headers, wantHeaders) || c.Timeout != 500*time.Millisecond || len(c.Body) != 0 {
					t.Errorf("call = %+v", c)
				}
				if err := h.RespondHTTPCall(c.ID, tc.resp); err != nil {
					t.Fatal(err)
				}
				if got, _ := header(s.RequestHeadersNow(), "x-authz"); got != tc.wantHeader {
					t.Errorf("x-authz = %q, want %q (set in the callback on the effective stream context)", got, tc.wantHeader)
				}
				if s.Resumed(wasmhost.StreamRequest) != 1 {
					t.Errorf("proxy_continue_stream(request) calls = %d, want 1", s.Resumed(wasmhost.StreamRequest))
				}
				if len(h.PendingHTTPCalls()) != 0 {
					t.Error("answered call still pending")
				}
				if err := h.RespondHTTPCall(c.ID, tc.resp); err == nil {
					t.Error("answering a call twice is not an error")
				}
				if err := s.Complete(); err != nil {
					t.Fatal(err)
				}
			})
		}
		noProblems(t, h)
	})
}

func TestHTTPCallCancelledWithItsStream(t *testing.T) {
	forEachBuild(t, func(t *testing.T, m *wasmhost.Module) {
		answers := 0
		h := load(t, m, wasmhost.Config{HTTPCall: func(r wasmhost.HTTPCallRequest) (wasmhost.HTTPCallResponse, bool) {
			answers++
			// Answer the stream's call through Flush, leave the tick's call pending.
			return wasmhost.HTTPCallResponse{Headers: [][2]string{{":status", "200"}}}, r.Cluster == "authz"
		}})
		s := h.NewHTTPStream(nil)
		if _, err := s.RequestHeaders([][2]string{{"x-op", "call"}}, true); err != nil {
			t.Fatal(err)
		}
		if err := h.Tick(); err != nil { // flushes the stream's answer
			t.Fatal(err)
		}
		pending := h.PendingHTTPCalls()
		if answers != 2 || len(pending) != 1 || pending[0].Context != 1 || pending[0].Cluster != "collector" {
			t.Fatalf("answers %d, pending %+v; want the tick's call from the root context", answers, pending)
		}
		s2 := h.NewHTTPStream(nil)
		if _, err := s2.RequestHeaders([][2]string{{"x-op", "call"}}, true); err != nil {
			t.Fatal(err)
		}
		if err := s2.Complete(); err != nil {
			t.Fatal(err)
		}
		if err := h.Flush(); err != nil {
			t.Fatal(err)
		}
		if _, ok := header(s2.RequestHeadersNow(), "x-authz"); ok {
			t.Error("a call of a deleted stream was answered")
		}
		if got := h.PendingHTTPCalls(); len(got) != 1 || got[0].ID != pending[0].ID {
			t.Errorf("pending after the stream's deletion = %+v, want only the root's call", got)
		}
		if _, err := s2.RequestHeaders(nil, true); err == nil {
			t.Error("a callback on a deleted stream is not an error")
		}
		if n := h.LiveContexts(); n != 2 {
			t.Errorf("LiveContexts = %d, want the root and the first stream", n)
		}
	})
}

func TestHTTPCallRejected(t *testing.T) {
	const badArgument = "error status returned by host: bad argument"
	tests := []struct {
		name     string
		op       string
		clusters []string
		want     string
	}{
		{"missing :method and :authority", "bad-call", nil, badArgument},
		{"unknown cluster", "call", []string{"collector"}, badArgument},
		{"known cluster", "call", []string{"authz"}, ""},
	}
	forEachBuild(t, func(t *testing.T, m *wasmhost.Module) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				h := load(t, m, wasmhost.Config{Clusters: tc.clusters})
				s := h.NewHTTPStream(nil)
				if _, err := s.RequestHeaders([][2]string{{"x-op", tc.op}}, true); err != nil {
					t.Fatal(err)
				}
				got, _ := header(s.RequestHeadersNow(), "x-call-error")
				if got != tc.want {
					t.Errorf("x-call-error = %q, want %q", got, tc.want)
				}
				if pending := len(h.PendingHTTPCalls()); (tc.want == "") != (pending == 1) {
					t.Errorf("%d calls pending", pending)
				}
			})
		}
	})
}

func TestTickAndCallResponder(t *testing.T) {
	tests := []struct {
		name        string
		respond     func(wasmhost.HTTPCallRequest) (wasmhost.HTTPCallResponse, bool)
		wantMetrics map[string]int64
		wantPending int
		wantLog     string
	}{{
		name: "answered",
		respond: func(r wasmhost.HTTPCallRequest) (wasmhost.HTTPCallResponse, bool) {
			return wasmhost.HTTPCallResponse{Headers: [][2]string{{":status", "204"}}, Body: []byte("got " + string(r.Body))}, true
		},
		wantMetrics: map[string]int64{"probe_ticks": 1, "probe_call_status": 204, "probe_call_failed": 0},
		wantLog:     `call answered 204 with "got tick"`,
	}, {
		name: "failed",
		respond: func(wasmhost.HTTPCallRequest) (wasmhost.HTTPCallResponse, bool) {
			return wasmhost.HTTPCallResponse{Headers: [][2]string{{":status", "200"}}, Failed: true}, true
		},
		wantMetrics: map[string]int64{"probe_ticks": 1, "probe_call_status": 0, "probe_call_failed": 1},
	}, {
		name: "left pending",
		respond: func(wasmhost.HTTPCallRequest) (wasmhost.HTTPCallResponse, bool) {
			return wasmhost.HTTPCallResponse{}, false
		},
		wantMetrics: map[string]int64{"probe_ticks": 1, "probe_call_status": 0, "probe_call_failed": 0},
		wantPending: 1,
	}}
	forEachBuild(t, func(t *testing.T, m *wasmhost.Module) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				h := load(t, m, wasmhost.Config{HTTPCall: tc.respond})
				if p := h.TickPeriod(); p != 250*time.Millisecond {
					t.Errorf("TickPeriod = %v, want 250ms", p)
				}
				if err := h.Tick(); err != nil {
					t.Fatal(err)
				}
				got := h.Metrics()
				for name, want := range tc.wantMetrics {
					if got[name] != want {
						t.Errorf("metric %s = %d, want %d", name, got[name], want)
					}
				}
				pending := h.PendingHTTPCalls()
				if len(pending) != tc.wantPending {
					t.Fatalf("pending = %+v", pending)
				}
				if tc.wantPending > 0 && (pending[0].Cluster != "collector" || string(pending[0].Body) != "tick" || pending[0].Timeout != 1500*time.Millisecond) {
					t.Errorf("pending call = %+v", pending[0])
				}
				if tc.wantLog != "" && !slices.ContainsFunc(h.Logs(), func(l wasmhost.LogEntry) bool { return l.Message == tc.wantLog }) {
					t.Errorf("logs %v lack %q", h.Logs(), tc.wantLog)
				}
				noProblems(t, h)
			})
		}
	})
}

func TestFlushDeliversOnlyReadyResponses(t *testing.T) {
	forEachBuild(t, func(t *testing.T, m *wasmhost.Module) {
		answered := 0
		h := load(t, m, wasmhost.Config{HTTPCall: func(wasmhost.HTTPCallRequest) (wasmhost.HTTPCallResponse, bool) {
			answered++
			return wasmhost.HTTPCallResponse{Headers: [][2]string{{":status", "200"}}}, true
		}})
		s := h.NewHTTPStream(nil)
		if a, err := s.RequestHeaders([][2]string{{"x-op", "call"}}, true); err != nil || a != wasmhost.ActionPause {
			t.Fatalf("RequestHeaders = %v, %v", a, err)
		}
		if answered != 1 {
			t.Fatalf("responder called %d times", answered)
		}
		if _, ok := header(s.RequestHeadersNow(), "x-authz"); ok {
			t.Fatal("the response was delivered inside proxy_http_call")
		}
		if err := h.Flush(); err != nil {
			t.Fatal(err)
		}
		if got, _ := header(s.RequestHeadersNow(), "x-authz"); got != "200" {
			t.Errorf("after Flush x-authz = %q", got)
		}
	})
}

func TestMetrics(t *testing.T) {
	forEachBuild(t, func(t *testing.T, m *wasmhost.Module) {
		h := load(t, m, wasmhost.Config{})
		headerSets := [][][2]string{{{"a", "1"}}, {{"a", "1"}, {"b", "2"}, {"c", "3"}}, nil}
		for _, hs := range headerSets {
			s := h.NewHTTPStream(nil)
			if _, err := s.RequestHeaders(hs, true); err != nil {
				t.Fatal(err)
			}
			if got := h.Metrics()["probe_live_streams"]; got != 1 {
				t.Errorf("gauge probe_live_streams = %d during a stream", got)
			}
			if err := s.Complete(); err != nil {
				t.Fatal(err)
			}
		}
		got := h.Metrics()
		if got["probe_requests"] != 3 || got["probe_live_streams"] != 0 {
			t.Errorf("metrics = %v", got)
		}
		if _, ok := got["probe_request_headers"]; ok {
			t.Error("Metrics lists a histogram")
		}
		samples, ok := h.Histogram("probe_request_headers")
		if want := []uint64{1, 3, 0}; !ok || !slices.Equal(samples, want) {
			t.Errorf("histogram = %v, %v; want %v", samples, ok, want)
		}
		if _, ok := h.Histogram("probe_requests"); ok {
			t.Error("Histogram returns a counter")
		}
	})
}

func TestLoadFailures(t *testing.T) {
	tests := []struct {
		name string
		cfg  wasmhost.Config
		want string
	}{
		{"vm start", wasmhost.Config{VMConfig: []byte("fail")}, "proxy_on_vm_start returned false: plugin log:\n\t[critical] vm configuration rejected"},
		{"configure", wasmhost.Config{PluginConfig: []byte("fail: no such field")}, "proxy_on_configure returned false: plugin log:\n\t[error] bad configuration: fail: no such field"},
	}
	forEachBuild(t, func(t *testing.T, m *wasmhost.Module) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				h, err := m.Load(t.Context(), tc.cfg)
				if err == nil {
					h.Close(t.Context())
					t.Fatal("Load succeeded")
				}
				if !strings.Contains(err.Error(), tc.want) {
					t.Errorf("error %q lacks %q", err, tc.want)
				}
			})
		}
		h := load(t, m, wasmhost.Config{PluginConfig: []byte(`{"ok":true}`)})
		if logs := h.Logs(); len(logs) != 1 || logs[0] != (wasmhost.LogEntry{Level: wasmhost.LogInfo, Message: "started with 11 configuration bytes"}) {
			t.Errorf("logs = %v", logs)
		}
	})
}

func TestCompileRejects(t *testing.T) {
	tests := []struct {
		name string
		wasm []byte
		want string
	}{
		{"not wasm", []byte("hello"), "compile"},
		// (module (func (export "_start"))): valid, but no proxy-wasm exports.
		{"not a plugin", []byte("\x00asm\x01\x00\x00\x00\x01\x04\x01\x60\x00\x00\x03\x02\x01\x00\x07\x0a\x01\x06_start\x00\x00\x0a\x04\x01\x02\x00\x0b"), "not a proxy-wasm plugin"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := wasmhost.Load(t.Context(), tc.wasm, wasmhost.Config{}); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Load error = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestDoneWaitsForProxyDone(t *testing.T) {
	forEachBuild(t, func(t *testing.T, m *wasmhost.Module) {
		h := load(t, m, wasmhost.Config{PluginConfig: []byte("drain")})
		finished, err := h.Done()
		if err != nil || finished {
			t.Fatalf("Done = %v, %v; want the plugin to defer its shutdown", finished, err)
		}
		calls := h.PendingHTTPCalls()
		if len(calls) != 1 || string(calls[0].Body) != "last" || h.DoneCalled() {
			t.Fatalf("pending %+v, proxy_done called %v", calls, h.DoneCalled())
		}
		if err := h.RespondHTTPCall(calls[0].ID, wasmhost.HTTPCallResponse{Headers: [][2]string{{":status", "200"}}}); err != nil {
			t.Fatal(err)
		}
		if !h.DoneCalled() {
			t.Error("proxy_done not called after the last response")
		}
		if finished, err := h.Done(); err != nil || !finished {
			t.Errorf("second Done = %v, %v; want finished", finished, err)
		}

		plain := load(t, m, wasmhost.Config{})
		if finished, err := plain.Done(); err != nil || !finished {
			t.Errorf("Done of a plugin without drain = %v, %v", finished, err)
		}
	})
}
