package envoy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// start runs Envoy for the test and stops it at cleanup.
func start(t *testing.T, b Bootstrap) *Process {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p, err := Start(ctx, b, Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Error(err)
		}
	})
	return p
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

func TestProcessProxiesHTTPAndTCP(t *testing.T) {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "app saw "+r.URL.Path)
	}))
	defer app.Close()
	echo := EchoTCP(t)

	p := start(t, Bootstrap{
		Listeners: []Listener{
			{Name: "inbound", Direction: Inbound, Cluster: "app"},
			{Name: "direct", Direct: &DirectResponse{Status: 418, Body: "teapot"}},
			{Name: "tcp", TCP: true, Cluster: "echo"},
		},
		Clusters: []Cluster{
			{Name: "app", Address: app.Listener.Addr().String()},
			{Name: "echo", Address: echo},
		},
	})
	ctx := context.Background()
	addr := func(name string) string {
		a, err := p.ListenerAddr(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}

	if code, body := get(t, "http://"+addr("inbound")+"/hello"); code != 200 || body != "app saw /hello" {
		t.Errorf("inbound: %d %q", code, body)
	}
	if code, body := get(t, "http://"+addr("direct")+"/"); code != 418 || body != "teapot" {
		t.Errorf("direct: %d %q", code, body)
	}
	conn, err := net.DialTimeout("tcp", addr("tcp"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, "ping\n"); err != nil {
		t.Fatal(err)
	}
	if line, err := bufio.NewReader(conn).ReadString('\n'); err != nil || line != "ping\n" {
		t.Errorf("tcp echo: %q %v", line, err)
	}
	if _, err := p.ListenerAddr(ctx, "missing"); err == nil {
		t.Error("ListenerAddr of an unknown listener: no error")
	}

	stats, err := p.Stats(ctx, `^http\.(inbound|direct)\.downstream_rq_[0-9]xx$`)
	if err != nil {
		t.Fatal(err)
	}
	if stats["http.inbound.downstream_rq_2xx"] != 1 || stats["http.direct.downstream_rq_4xx"] != 1 {
		t.Errorf("stats: %v", stats)
	}
	if rss, err := p.RSS(); err != nil || rss < 1<<20 {
		t.Errorf("RSS = %d, %v", rss, err)
	}
	// The worker thread is found and read; its time only grows.
	cpu0, err := p.WorkerCPU()
	if err != nil {
		t.Fatal(err)
	}
	for range 200 {
		get(t, "http://"+addr("inbound")+"/load")
	}
	if cpu1, err := p.WorkerCPU(); err != nil || cpu1 < cpu0 {
		t.Errorf("WorkerCPU after 200 requests %v (%v), before %v", cpu1, err, cpu0)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if !p.Exited() {
		t.Error("process still running after Close")
	}
}

// TestParseThreadCPU reads utime+stime (fields 14 and 15, in clock ticks) out of a thread's stat line, whose
// comm may hold spaces and parentheses, and refuses a short or garbled one.
func TestParseThreadCPU(t *testing.T) {
	const rest = " S 1 2 3 4 5 6 7 8 9 10 %s %s 13 14 15"
	for _, tc := range []struct {
		name, stat string
		want       time.Duration
		wantErr    bool
	}{
		{"worker", "42 (wrk:worker_0)" + fmt.Sprintf(rest, "150", "25"), 1750 * time.Millisecond, false},
		{"comm with spaces and a paren", "42 (a) b (c)" + fmt.Sprintf(rest, "1", "2"), 30 * time.Millisecond, false},
		{"idle", "42 (x)" + fmt.Sprintf(rest, "0", "0"), 0, false},
		{"no comm", "42 x S 1 2", 0, true},
		{"short", "42 (x) S 1 2 3", 0, true},
		{"not a number", "42 (x)" + fmt.Sprintf(rest, "1", "zz"), 0, true},
	} {
		got, err := parseThreadCPU([]byte(tc.stat))
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("%s: %v, %v; want %v, error %v", tc.name, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestStartFailsWithEnvoysReason(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.wasm")
	_, err := Start(context.Background(), Bootstrap{
		Listeners: []Listener{{Name: "in", Direct: &DirectResponse{Status: 200},
			Wasm: &Wasm{Name: "p", VMID: "p", File: missing, Config: "{}"}}},
	}, Options{Dir: t.TempDir()})
	if err == nil {
		t.Fatal("Envoy started with a missing .wasm file")
	}
	// The error carries Envoy's own log, which names the file it could not read.
	if !strings.Contains(err.Error(), "exited during startup") || !strings.Contains(err.Error(), missing) {
		t.Errorf("error does not explain the failure:\n%v", err)
	}
}

func TestRenderRejectsInconsistentBootstrap(t *testing.T) {
	tests := []struct {
		name string
		b    Bootstrap
		want string
	}{
		{"unknown cluster", Bootstrap{Listeners: []Listener{{Name: "l", Cluster: "nope"}}}, `unknown cluster "nope"`},
		{"tcp needs cluster", Bootstrap{Listeners: []Listener{{Name: "l", TCP: true, Direct: &DirectResponse{}}}}, "unknown cluster"},
		{"unnamed listener", Bootstrap{Listeners: []Listener{{Direct: &DirectResponse{}}}}, "without a name"},
		{"repeated cluster", Bootstrap{Clusters: []Cluster{{Name: "c", Address: "127.0.0.1:1"}, {Name: "c", Address: "127.0.0.1:2"}}}, "repeated"},
		{"bad cluster address", Bootstrap{Clusters: []Cluster{{Name: "c", Address: "localhost"}}}, `cluster "c"`},
		{"bad listener port", Bootstrap{Listeners: []Listener{{Name: "l", Address: "127.0.0.1:99999", Direct: &DirectResponse{}}}}, "bad port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.b.Render()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Render() error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

// TestRenderWasmEnv checks that a plugin's Env becomes its VM's environment_variables.key_values, and that
// a plugin without one gets no environment_variables.
func TestRenderWasmEnv(t *testing.T) {
	b := Bootstrap{Listeners: []Listener{
		{Name: "with", Direct: &DirectResponse{Status: 200}, Wasm: &Wasm{Name: "p", VMID: "p", File: "/f.wasm", Config: "{}",
			Env: map[string]string{"MESHTRACE_INGEST_TOKEN": "tok", "B": `quote"d`}}},
		{Name: "without", Direct: &DirectResponse{Status: 200}, Wasm: &Wasm{Name: "q", VMID: "q", File: "/f.wasm", Config: "{}"}},
	}}
	out, err := b.Render()
	if err != nil {
		t.Fatal(err)
	}
	want := `code: {local: {filename: "/f.wasm"}}, environment_variables: {key_values: {"B":"quote\"d","MESHTRACE_INGEST_TOKEN":"tok"}}}}`
	if n := strings.Count(string(out), want); n != 1 {
		t.Errorf("%d plugins with %s, want 1:\n%s", n, want, out)
	}
	if n := strings.Count(string(out), "environment_variables"); n != 1 {
		t.Errorf("environment_variables %d times, want once (the plugin without Env has none):\n%s", n, out)
	}
}

func TestParseStats(t *testing.T) {
	got := parseStats("a.b: 3\nwasmcustom.x.y: 42\ncluster.c.upstream_rq_time: P0(nan,1) P25(nan,2)\ng: -1\nnoise\n")
	want := map[string]int64{"a.b": 3, "wasmcustom.x.y": 42, "g": -1}
	if len(got) != len(want) {
		t.Fatalf("parseStats = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %d, want %d", k, got[k], v)
		}
	}
}

func TestEchoTCP(t *testing.T) {
	conn, err := net.DialTimeout("tcp", EchoTCP(t), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(conn)
	for _, line := range []string{"ping\n", "second line\n"} {
		if _, err := io.WriteString(conn, line); err != nil {
			t.Fatal(err)
		}
		if got, err := r.ReadString('\n'); err != nil || got != line {
			t.Errorf("echo of %q: %q %v", line, got, err)
		}
	}
}

// TestTracing checks that an HTTP listener with Envoy's tracer starts, and that the router injects the
// tracer's context: traceparent for OpenTelemetry, x-b3-* for Zipkin (the collectors need not answer).
func TestTracing(t *testing.T) {
	headers := make(chan http.Header, 1)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		headers <- r.Header.Clone()
	}))
	defer app.Close()
	for _, tt := range []struct {
		provider TracerProvider
		header   string
	}{{OpenTelemetry, "Traceparent"}, {Zipkin, "X-B3-Traceid"}} {
		t.Run(string(tt.provider), func(t *testing.T) {
			p := start(t, Bootstrap{
				Runtime: map[string]any{"tracing.opentelemetry.flush_interval_ms": 100},
				Listeners: []Listener{{Name: "outbound", Direction: Outbound, Cluster: "app", Tracing: &Tracing{
					Provider: tt.provider, Cluster: "collector", ServiceName: "app.default", RandomSampling: 50,
					CustomTags: []CustomTag{{Tag: "customer_id", Header: "x-customer-id"}, {Tag: "istio.namespace", Literal: "default"}},
				}}},
				Clusters: []Cluster{
					{Name: "app", Address: app.Listener.Addr().String()},
					{Name: "collector", Address: EchoTCP(t), HTTP2: tt.provider == OpenTelemetry},
				},
			})
			addr, err := p.ListenerAddr(context.Background(), "outbound")
			if err != nil {
				t.Fatal(err)
			}
			if code, _ := get(t, "http://"+addr+"/"); code != http.StatusOK {
				t.Fatalf("status %d", code)
			}
			if h := <-headers; h.Get(tt.header) == "" {
				t.Errorf("the app saw no %s: %v", tt.header, h)
			}
		})
	}
}

func TestRenderTracingErrors(t *testing.T) {
	app := Cluster{Name: "app", Address: "127.0.0.1:1"}
	for _, tt := range []struct {
		name string
		l    Listener
		want string
	}{
		{"unknown cluster", Listener{Name: "l", Cluster: "app", Tracing: &Tracing{Provider: Zipkin, Cluster: "zipkin"}}, `unknown tracing cluster "zipkin"`},
		{"tcp", Listener{Name: "l", TCP: true, Cluster: "app", Tracing: &Tracing{Provider: Zipkin, Cluster: "app"}}, "tracing needs an HTTP listener"},
		{"sampling", Listener{Name: "l", Cluster: "app", Tracing: &Tracing{Provider: Zipkin, Cluster: "app", RandomSampling: 101}}, "out of (0, 100]"},
		{"provider", Listener{Name: "l", Cluster: "app", Tracing: &Tracing{Provider: "jaeger", Cluster: "app"}}, `unknown tracer provider "jaeger"`},
	} {
		_, err := Bootstrap{Listeners: []Listener{tt.l}, Clusters: []Cluster{app}}.Render()
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want %q", tt.name, err, tt.want)
		}
	}
}

// TestTracingOTLPHTTP checks that OpenTelemetry with OTLPHTTPURI posts OTLP/HTTP protobuf to the URI's path,
// with its host as Host, on the tracing cluster.
func TestTracingOTLPHTTP(t *testing.T) {
	app := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer app.Close()
	posts := make(chan *http.Request, 16)
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case posts <- r:
		default:
		}
	}))
	defer collector.Close()
	p := start(t, Bootstrap{
		Runtime: map[string]any{"tracing.opentelemetry.flush_interval_ms": 100, "tracing.opentelemetry.min_flush_spans": 1},
		Listeners: []Listener{{Name: "inbound", Direction: Inbound, Cluster: "app", Tracing: &Tracing{
			Provider: OpenTelemetry, Cluster: "collector", ServiceName: "app.default",
			OTLPHTTPURI: "http://otel-collector:4318/v1/traces",
		}}},
		Clusters: []Cluster{
			{Name: "app", Address: app.Listener.Addr().String()},
			{Name: "collector", Address: collector.Listener.Addr().String()},
		},
	})
	addr, err := p.ListenerAddr(context.Background(), "inbound")
	if err != nil {
		t.Fatal(err)
	}
	if code, _ := get(t, "http://"+addr+"/"); code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	select {
	case r := <-posts:
		if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" || r.Host != "otel-collector:4318" ||
			r.Header.Get("Content-Type") != "application/x-protobuf" {
			t.Errorf("export %s %s Host %s Content-Type %s", r.Method, r.URL.Path, r.Host, r.Header.Get("Content-Type"))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no OTLP/HTTP export within 10s")
	}
}
