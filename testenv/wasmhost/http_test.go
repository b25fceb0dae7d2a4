package wasmhost_test

import (
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/testenv/wasmhost"
)

// header returns the first value of name in h.
func header(h [][2]string, name string) (string, bool) {
	for _, kv := range h {
		if kv[0] == name {
			return kv[1], true
		}
	}
	return "", false
}

// noProblems fails the test if the plugin logged a warning or worse.
func noProblems(t *testing.T, h *wasmhost.Host) {
	t.Helper()
	for _, l := range h.Logs() {
		if l.Level >= wasmhost.LogWarn {
			t.Errorf("plugin log: [%s] %s", l.Level, l.Message)
		}
	}
}

func TestRequestHeaders(t *testing.T) {
	props := map[string][]byte{"node.metadata.WORKLOAD_NAME": []byte("reviews-v1")}
	tests := []struct {
		name    string
		headers [][2]string
		props   map[string][]byte
		want    [][2]string // exact headers after proxy_on_request_headers
	}{{
		name:    "add replace remove",
		headers: [][2]string{{":path", "/a"}, {"X-Remove", "1"}, {"x-replace", "a"}, {"x-remove", "2"}, {"X-Replace", "b"}},
		want:    [][2]string{{":path", "/a"}, {"x-replace", "replaced"}, {"x-probe-seen", "5"}},
	}, {
		name:    "set all pairs",
		headers: [][2]string{{":path", "/b"}, {"x-op", "pairs"}, {"x-multi", "1"}, {"x-multi", "2"}},
		want:    [][2]string{{"x-probe-seen", "4"}, {"x-multi", "2"}, {"x-multi", "1"}, {"x-op", "pairs"}, {":path", "/b"}},
	}, {
		name:    "properties",
		headers: [][2]string{{"x-op", "property"}},
		props:   map[string][]byte{"xds.cluster_name": []byte("outbound|9080||reviews")},
		want: [][2]string{{"x-op", "property"}, {"x-probe-seen", "1"}, {"x-workload", "reviews-v1ok"},
			{"x-cluster", "outbound|9080||reviewsok"}, {"x-missing", "error status returned by host: not found"}},
	}, {
		name:    "plugin configuration outside proxy_on_configure",
		headers: [][2]string{{"x-op", "config"}},
		want:    [][2]string{{"x-op", "config"}, {"x-probe-seen", "1"}, {"x-config", "error status returned by host: not found"}},
	}, {
		name:    "stream property missing",
		headers: [][2]string{{"x-op", "property"}},
		want: [][2]string{{"x-op", "property"}, {"x-probe-seen", "1"}, {"x-workload", "reviews-v1ok"},
			{"x-cluster", "error status returned by host: not found"}, {"x-missing", "error status returned by host: not found"}},
	}}
	forEachBuild(t, func(t *testing.T, m *wasmhost.Module) {
		h := load(t, m, wasmhost.Config{Properties: props, PluginConfig: []byte("probe")})
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				s := h.NewHTTPStream(tc.props)
				a, err := s.RequestHeaders(tc.headers, true)
				if err != nil || a != wasmhost.ActionContinue {
					t.Fatalf("RequestHeaders = %v, %v", a, err)
				}
				if got := s.RequestHeadersNow(); !slices.Equal(got, tc.want) {
					t.Errorf("headers:\n got %q\nwant %q", got, tc.want)
				}
				if err := s.Complete(); err != nil {
					t.Fatal(err)
				}
			})
		}
		noProblems(t, h)
	})
}

func TestPropertySetByPlugin(t *testing.T) {
	forEachBuild(t, func(t *testing.T, m *wasmhost.Module) {
		h := load(t, m, wasmhost.Config{})
		s := h.NewHTTPStream(nil)
		if _, err := s.RequestHeaders([][2]string{{"x-op", "property"}}, true); err != nil {
			t.Fatal(err)
		}
		if v, ok := s.Property("probe.stream"); !ok || string(v) != "set-by-probe" {
			t.Errorf("stream property probe.stream = %q, %v", v, ok)
		}
		if _, ok := h.NewHTTPStream(nil).Property("probe.stream"); ok {
			t.Error("a stream's proxy_set_property leaked into another stream")
		}
	})
}

func TestBodiesAndResponse(t *testing.T) {
	forEachBuild(t, func(t *testing.T, m *wasmhost.Module) {
		h := load(t, m, wasmhost.Config{})
		s := h.NewHTTPStream(map[string][]byte{"response.code": []byte("201")})
		steps := []struct {
			name string
			do   func() (wasmhost.Action, error)
			want wasmhost.Action
		}{
			{"request headers", func() (wasmhost.Action, error) { return s.RequestHeaders([][2]string{{":method", "POST"}}, false) }, wasmhost.ActionContinue},
			{"first chunk", func() (wasmhost.Action, error) { return s.RequestBody([]byte("hello "), false) }, wasmhost.ActionPause},
			{"last chunk", func() (wasmhost.Action, error) { return s.RequestBody([]byte("world"), true) }, wasmhost.ActionContinue},
			{"response headers", func() (wasmhost.Action, error) { return s.ResponseHeaders([][2]string{{":status", "201"}}, false) }, wasmhost.ActionContinue},
			{"response body", func() (wasmhost.Action, error) { return s.ResponseBody([]byte("body"), true) }, wasmhost.ActionContinue},
			{"response trailers", func() (wasmhost.Action, error) { return s.ResponseTrailers([][2]string{{"grpc-status", "0"}}) }, wasmhost.ActionContinue},
		}
		for _, st := range steps {
			if a, err := st.do(); err != nil || a != st.want {
				t.Fatalf("%s = %v, %v; want %v", st.name, a, err, st.want)
			}
		}
		if got := string(s.RequestBodyNow()); got != "WORLD" {
			t.Errorf("request body = %q, want the last chunk upper-cased", got)
		}
		if got := string(s.ResponseBodyNow()); got != "<body!" {
			t.Errorf("response body = %q, want %q", got, "<body!")
		}
		if got, _ := header(s.ResponseHeadersNow(), "x-probe-status"); got != "201/201ok" {
			t.Errorf("x-probe-status = %q", got)
		}
		// Envoy drops the request headers once proxy_on_request_headers continues.
		if got, _ := header(s.ResponseHeadersNow(), "x-request-path"); got != "error status returned by host: bad argument" {
			t.Errorf("request headers read during the response: %q", got)
		}
		want := [][2]string{{"grpc-status", "0"}, {"x-probe-trailer", "1"}}
		if got := s.ResponseTrailersNow(); !slices.Equal(got, want) {
			t.Errorf("trailers = %q, want %q", got, want)
		}
		if err := s.Complete(); err != nil {
			t.Fatal(err)
		}
		// proxy_on_log sees the request headers again, as Envoy's access log phase does.
		logLine := wasmhost.LogEntry{Level: wasmhost.LogInfo, Message: "log: method POST, status 201"}
		if !slices.Contains(h.Logs(), logLine) {
			t.Errorf("logs %v lack %v", h.Logs(), logLine)
		}
		noProblems(t, h)
	})
}

func TestLocalResponse(t *testing.T) {
	forEachBuild(t, func(t *testing.T, m *wasmhost.Module) {
		h := load(t, m, wasmhost.Config{})
		s := h.NewHTTPStream(nil)
		a, err := s.RequestHeaders([][2]string{{"x-op", "deny"}}, true)
		if err != nil || a != wasmhost.ActionPause {
			t.Fatalf("RequestHeaders = %v, %v", a, err)
		}
		if status, ok := s.LocalResponse(); !ok || status != 403 {
			t.Errorf("LocalResponse = %d, %v", status, ok)
		}
		r, _ := s.LocalReply()
		if string(r.Body) != "denied" || !slices.Equal(r.Headers, [][2]string{{"x-denied-by", "probe"}}) || r.GRPCStatus != -1 {
			t.Errorf("LocalReply = %+v", r)
		}
		plain := h.NewHTTPStream(nil)
		if _, err := plain.RequestHeaders(nil, true); err != nil {
			t.Fatal(err)
		}
		if _, ok := plain.LocalResponse(); ok {
			t.Error("a stream without send_local_response reports a local response")
		}
	})
}

func TestClock(t *testing.T) {
	now := time.Date(2026, 3, 4, 5, 6, 7, 8000, time.UTC)
	forEachBuild(t, func(t *testing.T, m *wasmhost.Module) {
		h := load(t, m, wasmhost.Config{Now: func() time.Time { return now }})
		s := h.NewHTTPStream(nil)
		if _, err := s.RequestHeaders([][2]string{{"x-op", "time"}}, true); err != nil {
			t.Fatal(err)
		}
		got, _ := header(s.RequestHeadersNow(), "x-time")
		if want := strconv.FormatInt(now.UnixNano(), 10); got != want {
			t.Errorf("guest time.Now = %s, want %s", got, want)
		}
	})
}
