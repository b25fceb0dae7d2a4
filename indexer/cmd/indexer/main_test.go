package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/meshtrace/meshtrace/indexer/api"
	"github.com/meshtrace/meshtrace/indexer/document"
	"github.com/meshtrace/meshtrace/indexer/pipeline"
)

// startServer runs `serve` on loopback ports with an embedded store in a temporary directory, its config changed
// by configure.
func startServer(t *testing.T, configure ...func(*serveConfig)) (listeners, func() error) {
	t.Helper()
	c := newServeConfig()
	c.otlpHTTPAddr, c.otlpGRPCAddr, c.apiAddr, c.dataDir = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", t.TempDir()
	c.shutdownTimeout, c.pipeline.BatchTimeout = 10*time.Second, 5*time.Millisecond
	for _, f := range configure {
		f(&c)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan listeners, 1)
	done := make(chan error, 1)
	go func() {
		done <- serve(ctx, c, slog.New(slog.NewTextHandler(io.Discard, nil)), func(l listeners) { ready <- l })
	}()
	select {
	case l := <-ready:
		stopped := false
		stop := func() error {
			if stopped {
				return nil
			}
			stopped = true
			cancel()
			return <-done
		}
		t.Cleanup(func() { stop() })
		return l, stop
	case err := <-done:
		cancel()
		t.Fatalf("serve: %v", err)
	}
	return listeners{}, nil
}

// sendTrace exports gateway -> checkout -> inventory spans, the gateway part over OTLP/HTTP and the rest
// over OTLP/gRPC, as two services of a mesh would.
func sendTrace(t *testing.T, l listeners) trace.TraceID {
	t.Helper()
	ctx := context.Background()
	httpExp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL("http://"+l.otlpHTTP.String()+"/v1/traces"))
	if err != nil {
		t.Fatal(err)
	}
	grpcExp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(l.otlpGRPC.String()), otlptracegrpc.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	provider := func(exp sdktrace.SpanExporter, service string) *sdktrace.TracerProvider {
		return sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp),
			sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", service))))
	}
	gw, inv := provider(httpExp, "gateway"), provider(grpcExp, "inventory-service")
	cust := attribute.String("customer_id", "123")
	ctx, root := gw.Tracer("t").Start(ctx, "GET /checkout", trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(cust, attribute.String("http.route", "/checkout")))
	ctx, call := inv.Tracer("t").Start(ctx, "reserve", trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(cust))
	_, db := inv.Tracer("t").Start(ctx, "SELECT stock", trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("peer.service", "postgres")))
	time.Sleep(2 * time.Millisecond)
	db.SetStatus(codes.Error, "connection reset")
	db.End()
	call.End()
	root.End()
	for _, tp := range []*sdktrace.TracerProvider{inv, gw} {
		if err := tp.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	return root.SpanContext().TraceID()
}

// waitIndexed waits until the indexer has written n spans and everything it acknowledged is searchable, and
// returns its ingest stats.
func waitIndexed(t *testing.T, server string, n int64) pipeline.Stats {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(server + "/api/v1/ingest")
		if err != nil {
			t.Fatal(err)
		}
		var stats pipeline.Stats
		err = json.NewDecoder(resp.Body).Decode(&stats)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if stats.Written >= n && stats.Lag == 0 || time.Now().After(deadline) {
			return stats
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// get returns the body of a 200 answer to GET url.
func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	return string(b)
}

// run executes the CLI with args and returns its output.
func run(t *testing.T, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	cmd := newRootCmd()
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	if err := cmd.Execute(); err != nil {
		t.Fatalf("indexer %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

func TestServeSearchTrace(t *testing.T) {
	l, stop := startServer(t)
	traceID := sendTrace(t, l).String()
	server := "http://" + l.api.String()
	if stats := waitIndexed(t, server, 3); stats.Written != 3 {
		t.Fatalf("ingest stats %+v; want 3 written", stats)
	}

	out := run(t, "search", "--server", server, "customer_id=123 service=inventory-service trace.duration>1ms since=1h")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "START") || !strings.Contains(lines[1], traceID) ||
		!strings.Contains(lines[1], "gateway GET /checkout") || !strings.Contains(lines[1], "gateway,inventory-service") || lines[2] != "1 of 1 traces" {
		t.Fatalf("search output:\n%s", out)
	}
	// Columns are aligned: every header starts where its values do.
	if strings.Index(lines[0], "TRACE") != strings.Index(lines[1], traceID) {
		t.Fatalf("columns not aligned:\n%s", out)
	}

	t.Setenv("MESHTRACE_SERVER", server)
	out = run(t, "search", "--spans", "customer_id=123 service=inventory-service trace.duration>1ms since=1h")
	if !strings.Contains(out, "inventory-service  reserve") || !strings.HasSuffix(out, "1 of 1 spans\n") {
		t.Fatalf("search --spans output:\n%s", out)
	}
	out = run(t, "search", "--json", "error=true")
	if !strings.Contains(out, `"status_message":"connection reset"`) || !strings.Contains(out, `"target":"spans"`) {
		t.Fatalf("search --json output:\n%s", out)
	}

	out = run(t, "trace", traceID)
	want := []string{
		"trace " + traceID + "  ",
		"3 spans, 1 errors  customer_id=123",
		"└─ gateway GET /checkout [server] ",
		"http.route=/checkout",
		"   └─ inventory-service reserve [server] ",
		`      └─ inventory-service SELECT stock [client] `,
		`ERROR "connection reset" peer.service=postgres`,
	}
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Fatalf("trace output lacks %q:\n%s", w, out)
		}
	}
	for _, want := range []string{`meshtrace_receiver_spans_total{outcome="accepted",transport="grpc"} 2`,
		`meshtrace_receiver_spans_total{outcome="accepted",transport="http"} 1`, "meshtrace_wal_bytes ",
		"meshtrace_store_spans_written_total 3", "meshtrace_index_lag_seconds_count ", "meshtrace_attribute_keys ",
		`meshtrace_query_duration_seconds_count{route="GET /api/v1/search"} 3`} {
		if metrics := get(t, server+"/metrics"); !strings.Contains(metrics, want) {
			t.Fatalf("/metrics lacks %q:\n%s", want, metrics)
		}
	}
	if err := stop(); err != nil {
		t.Fatalf("graceful shutdown: %v", err)
	}
}

func TestCLIErrors(t *testing.T) {
	l, _ := startServer(t)
	cmd := newRootCmd()
	cmd.SetOut(io.Discard)
	cmd.SetArgs([]string{"search", "--server", "http://" + l.api.String(), "duration>>1"})
	if err := cmd.Execute(); err == nil || !strings.Contains(err.Error(), "at position") {
		t.Fatalf("invalid query: error %v", err)
	}
	cmd = newRootCmd()
	cmd.SetArgs([]string{"trace", "--server", "http://" + l.api.String(), "0000000000000000000000000000dead"})
	if err := cmd.Execute(); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("unknown trace: error %v", err)
	}
	t.Setenv("MESHTRACE_LIMIT", "many")
	cmd = newRootCmd()
	cmd.SetArgs([]string{"search", "x=1"})
	if err := cmd.Execute(); err == nil || !strings.Contains(err.Error(), "MESHTRACE_LIMIT") {
		t.Fatalf("bad env var: error %v", err)
	}
}

func TestWriteTreeOrphansAndOrder(t *testing.T) {
	var out bytes.Buffer
	spans := []document.Span{
		{SpanID: "b", ParentSpanID: "a", Service: "s", Name: "second", Kind: "client", Start: 20, Duration: 1500},
		{SpanID: "c", ParentSpanID: "missing", Service: "s", Name: "orphan", Kind: "server", Start: 5, Duration: 2_500_000},
		{SpanID: "a", Service: "s", Name: "root", Kind: "server", Start: 1, Duration: 40},
		{SpanID: "d", ParentSpanID: "a", Service: "s", Name: "first", Kind: "client", Start: 10, Duration: 3},
	}
	if err := writeTree(&out, api.TraceResponse{Trace: document.Trace{TraceID: "t", Duration: 40, SpanCount: 4}, Spans: spans}); err != nil {
		t.Fatal(err)
	}
	want := `trace t  40µs  4 spans, 0 errors
├─ s root [server] 40µs
│  ├─ s first [client] 3µs
│  └─ s second [client] 1.5ms
└─ s orphan [server] 2.50s
`
	if out.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", out.String(), want)
	}
}

func TestRetentionPasses(t *testing.T) {
	for _, tc := range []struct {
		name      string
		retention time.Duration
		perTenant map[string]time.Duration
		want      string
	}{
		{"default only", 168 * time.Hour, nil, "[168h0m0s]"},
		{"forever", 0, nil, "[]"},
		{"tenants", 168 * time.Hour, map[string]time.Duration{"team-b": 24 * time.Hour, "team-a": 0},
			`[24h0m0s of tenant = team-b 168h0m0s of NOT tenant IN [team-a, team-b]]`},
		{"tenant only", 0, map[string]time.Duration{"team-a": time.Hour}, "[1h0m0s of tenant = team-a]"},
	} {
		if got := fmt.Sprint(retentionPasses(tc.retention, tc.perTenant)); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
	var m map[string]time.Duration
	v := tenantDurations{&m}
	if err := v.Set("team-a=720h,team-b=0s"); err != nil || v.String() != "team-a=720h0m0s,team-b=0s" {
		t.Errorf("Set: %v, %s", err, v.String())
	}
	for _, bad := range []string{"team-a", "Team_A=1h", "team-a=-1h", "team-a=soon"} {
		if err := v.Set(bad); err == nil {
			t.Errorf("--tenant-retention %q accepted", bad)
		}
	}
}
