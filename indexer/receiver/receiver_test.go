package receiver

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/meshtrace/meshtrace/indexer/document"
	"github.com/meshtrace/meshtrace/indexer/pipeline"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// recorder is a Consumer that keeps what it is given; it refuses the first `refuse` calls.
type recorder struct {
	mu     sync.Mutex
	spans  []document.Span
	calls  int
	refuse int
	err    error // returned by every call when set
}

func (r *recorder) Consume(_ context.Context, spans []document.Span) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	if r.err != nil {
		return r.err
	}
	if r.calls <= r.refuse {
		return &pipeline.OverloadError{RetryAfter: time.Second, Reason: "ingest queue full"}
	}
	r.spans = append(r.spans, spans...)
	return nil
}

func (r *recorder) got() ([]document.Span, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.spans), r.calls
}

// emit records a small trace with the OTel SDK through exp and returns the span contexts (root first).
func emit(t *testing.T, exp sdktrace.SpanExporter) []trace.SpanContext {
	t.Helper()
	res := resource.NewSchemaless(attribute.String("service.name", "checkout"), attribute.String("k8s.namespace.name", "shop"))
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp), sdktrace.WithResource(res))
	tr := tp.Tracer("meshtrace-test")
	ctx, root := tr.Start(context.Background(), "GET /cart", trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String("customer_id", "123"), attribute.Int("http.response.status_code", 200)))
	_, child := tr.Start(ctx, "SELECT carts", trace.WithSpanKind(trace.SpanKindClient),
		trace.WithLinks(trace.Link{SpanContext: root.SpanContext(), Attributes: []attribute.KeyValue{attribute.String("why", "test")}}))
	child.AddEvent("retry", trace.WithAttributes(attribute.Int("attempt", 2)))
	child.SetStatus(codes.Error, "connection reset")
	child.End()
	root.End()
	if err := tp.Shutdown(context.Background()); err != nil {
		t.Fatalf("exporter shutdown: %v", err)
	}
	return []trace.SpanContext{root.SpanContext(), child.SpanContext()}
}

// checkSpans verifies the documents the SDK's two spans became.
func checkSpans(t *testing.T, got []document.Span, want []trace.SpanContext) {
	t.Helper()
	if len(got) != 2 {
		t.Fatalf("received %d spans, want 2", len(got))
	}
	byName := map[string]document.Span{}
	for _, s := range got {
		byName[s.Name] = s
	}
	root, child := byName["GET /cart"], byName["SELECT carts"]
	traceID := want[0].TraceID().String()
	if root.TraceID != traceID || root.SpanID != want[0].SpanID().String() || root.ID != traceID+"-"+root.SpanID {
		t.Errorf("root ids %s %s %s, want trace %s span %s", root.ID, root.TraceID, root.SpanID, traceID, want[0].SpanID())
	}
	if child.ParentSpanID != root.SpanID || child.SpanID != want[1].SpanID().String() {
		t.Errorf("child span %s parent %s, want %s parent %s", child.SpanID, child.ParentSpanID, want[1].SpanID(), root.SpanID)
	}
	if root.Kind != "server" || child.Kind != "client" || root.Service != "checkout" || root.Scope != "meshtrace-test" {
		t.Errorf("kind/service/scope wrong: %+v", root)
	}
	if root.Attr["customer_id"] != "123" || root.Attr["http.response.status_code"] != int64(200) || root.Resource["k8s.namespace.name"] != "shop" {
		t.Errorf("attributes wrong: %v %v", root.Attr, root.Resource)
	}
	if !child.Error || child.StatusCode != "error" || child.StatusMessage != "connection reset" {
		t.Errorf("status wrong: %+v", child)
	}
	if len(child.Events) != 1 || child.Events[0].Name != "retry" || child.Events[0].Attr["attempt"] != int64(2) {
		t.Errorf("events wrong: %+v", child.Events)
	}
	if len(child.Links) != 1 || child.Links[0].SpanID != root.SpanID || child.Links[0].Attr["why"] != "test" {
		t.Errorf("links wrong: %+v", child.Links)
	}
	if root.Duration != root.End-root.Start || root.Start <= 0 || root.Start > time.Now().UnixMicro() {
		t.Errorf("times wrong: %+v", root)
	}
}

func TestOTelSDKOverHTTP(t *testing.T) {
	for _, compression := range []otlptracehttp.Compression{otlptracehttp.NoCompression, otlptracehttp.GzipCompression} {
		rec := &recorder{}
		srv := httptest.NewServer(New(rec, Config{Logger: quiet}))
		defer srv.Close()
		exp, err := otlptracehttp.New(context.Background(), otlptracehttp.WithEndpointURL(srv.URL+TracesPath),
			otlptracehttp.WithCompression(compression))
		if err != nil {
			t.Fatal(err)
		}
		want := emit(t, exp)
		got, _ := rec.got()
		checkSpans(t, got, want)
	}
}

func startGRPC(t *testing.T, rec pipeline.Consumer) string {
	t.Helper()
	r := New(rec, Config{Logger: quiet})
	s := grpc.NewServer(r.ServerOptions()...)
	r.RegisterGRPC(s)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	return lis.Addr().String()
}

func TestOTelSDKOverGRPC(t *testing.T) {
	rec := &recorder{}
	addr := startGRPC(t, rec)
	exp, err := otlptracegrpc.New(context.Background(), otlptracegrpc.WithEndpoint(addr), otlptracegrpc.WithInsecure(),
		otlptracegrpc.WithCompressor("gzip"))
	if err != nil {
		t.Fatal(err)
	}
	want := emit(t, exp)
	got, _ := rec.got()
	checkSpans(t, got, want)
}

// TestOTelSDKRetriesWhenBacklogged checks that real exporters understand the refusal (HTTP 429 + Retry-After,
// gRPC UNAVAILABLE + RetryInfo), come back and get their spans stored.
func TestOTelSDKRetriesWhenBacklogged(t *testing.T) {
	tests := []struct {
		name  string
		delay string // what the exporter is told to wait for
		dial  func(t *testing.T, rec *recorder) (sdktrace.SpanExporter, error)
	}{
		{"http", "the 1s Retry-After", func(t *testing.T, rec *recorder) (sdktrace.SpanExporter, error) {
			srv := httptest.NewServer(New(rec, Config{Logger: quiet}))
			t.Cleanup(srv.Close)
			return otlptracehttp.New(context.Background(), otlptracehttp.WithEndpointURL(srv.URL+TracesPath),
				otlptracehttp.WithRetry(otlptracehttp.RetryConfig{Enabled: true, InitialInterval: time.Millisecond, MaxInterval: time.Millisecond, MaxElapsedTime: time.Minute}))
		}},
		{"grpc", "the 1s RetryInfo delay", func(t *testing.T, rec *recorder) (sdktrace.SpanExporter, error) {
			return otlptracegrpc.New(context.Background(), otlptracegrpc.WithEndpoint(startGRPC(t, rec)), otlptracegrpc.WithInsecure(),
				otlptracegrpc.WithRetry(otlptracegrpc.RetryConfig{Enabled: true, InitialInterval: time.Millisecond, MaxInterval: time.Millisecond, MaxElapsedTime: time.Minute}))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{refuse: 1}
			exp, err := tt.dial(t, rec)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			want := emit(t, exp)
			got, calls := rec.got()
			if calls != 3 {
				t.Fatalf("consumer called %d times, want 3 (refused, retried, second export)", calls)
			}
			if waited := time.Since(start); waited < time.Second {
				t.Fatalf("exporter came back after %v, before %s", waited, tt.delay)
			}
			checkSpans(t, got, want)
		})
	}
}

const goodJSON = `{"resourceSpans":[{"scopeSpans":[{"spans":[
 {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"ok","startTimeUnixNano":"1","endTimeUnixNano":"2"},
 {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"not-hex","name":"bad","startTimeUnixNano":"1","endTimeUnixNano":"2"},
 {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b175","name":"late","startTimeUnixNano":"0"}]}]}]}`

func gzipped(b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

func TestHTTPAnswers(t *testing.T) {
	validProto, _ := proto.Marshal(&coltracepb.ExportTraceServiceRequest{})
	tests := []struct {
		name        string
		method      string
		contentType string
		encoding    string
		body        []byte
		consumer    *recorder
		wantCode    int
		wantMsg     string // in the google.rpc.Status message (errors) or partial success
		wantRetry   string // Retry-After header
		wantSpans   int
	}{
		{name: "empty protobuf", contentType: "application/x-protobuf", body: validProto, wantCode: 200},
		{name: "json partial success", contentType: "application/json", body: []byte(goodJSON), wantCode: 200,
			wantMsg: "2 spans rejected; first: resourceSpans[0].scopeSpans[0].spans[1]: span_id must be 8 bytes, got 1", wantSpans: 1},
		{name: "gzip json", contentType: "application/json; charset=utf-8", encoding: "gzip", body: gzipped([]byte(goodJSON)), wantCode: 200,
			wantMsg: "2 spans rejected", wantSpans: 1},
		{name: "garbage protobuf", contentType: "application/x-protobuf", body: []byte{0x0a, 0xff, 0xff}, wantCode: 400, wantMsg: "cannot decode request: invalid protobuf"},
		{name: "truncated json", contentType: "application/json", body: []byte(`{"resourceSpans":[`), wantCode: 400, wantMsg: "cannot decode request: invalid JSON"},
		{name: "json wrong type", contentType: "application/json", body: []byte(`{"resourceSpans":[{"scopeSpans":[{"spans":[{"name":1}]}]}]}`),
			wantCode: 400, wantMsg: "resourceSpans[0].scopeSpans[0].spans[0].name: expected a string, got number"},
		{name: "bad gzip", contentType: "application/json", encoding: "gzip", body: []byte("not gzip"), wantCode: 400, wantMsg: "invalid gzip body"},
		{name: "truncated gzip", contentType: "application/json", encoding: "gzip", body: gzipped([]byte(goodJSON))[:20], wantCode: 400, wantMsg: "cannot read body"},
		{name: "unknown encoding", contentType: "application/json", encoding: "br", body: []byte(goodJSON), wantCode: 400, wantMsg: `unsupported content encoding "br"`},
		{name: "unknown content type", contentType: "text/plain", body: []byte("hi"), wantCode: 415, wantMsg: `unsupported content type "text/plain"`},
		{name: "GET", method: http.MethodGet, contentType: "application/json", wantCode: 405, wantMsg: "only POST"},
		{name: "too large", contentType: "application/json", body: bytes.Repeat([]byte(" "), 2048), wantCode: 413, wantMsg: "exceeds 1024 bytes"},
		{name: "gzip bomb", contentType: "application/json", encoding: "gzip", body: gzipped(bytes.Repeat([]byte(" "), 4096)), wantCode: 413, wantMsg: "exceeds 1024 bytes"},
		{name: "queue full", contentType: "application/json", body: []byte(goodJSON), consumer: &recorder{refuse: 1}, wantCode: 429, wantMsg: "ingest queue full", wantRetry: "1"},
		{name: "store down", contentType: "application/json", body: []byte(goodJSON),
			consumer: &recorder{err: &pipeline.OverloadError{RetryAfter: 2500 * time.Millisecond, Unavailable: true, Reason: "store unavailable"}}, wantCode: 503, wantMsg: "store unavailable", wantRetry: "3"},
		{name: "stopping", contentType: "application/x-protobuf", body: validProto,
			consumer: &recorder{err: pipeline.ErrStopped}, wantCode: 503, wantMsg: "shutting down", wantRetry: "1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := tt.consumer
			if rec == nil {
				rec = &recorder{}
			}
			h := New(rec, Config{MaxBodyBytes: 1024, Logger: quiet})
			method := tt.method
			if method == "" {
				method = http.MethodPost
			}
			req := httptest.NewRequest(method, TracesPath, bytes.NewReader(tt.body))
			req.Header.Set("Content-Type", tt.contentType)
			if tt.encoding != "" {
				req.Header.Set("Content-Encoding", tt.encoding)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != tt.wantCode {
				t.Fatalf("status %d, want %d; body %q", w.Code, tt.wantCode, w.Body)
			}
			if got := w.Header().Get("Retry-After"); got != tt.wantRetry {
				t.Errorf("Retry-After %q, want %q", got, tt.wantRetry)
			}
			var msg string
			isJSON := strings.HasPrefix(tt.contentType, "application/json")
			if wantCT := map[bool]string{true: "application/json", false: "application/x-protobuf"}[isJSON]; w.Header().Get("Content-Type") != wantCT {
				t.Errorf("response content type %q, want %q", w.Header().Get("Content-Type"), wantCT)
			}
			unmarshal := proto.Unmarshal
			if isJSON {
				unmarshal = protojson.Unmarshal
			}
			if tt.wantCode == 200 {
				var resp coltracepb.ExportTraceServiceResponse
				if err := unmarshal(w.Body.Bytes(), &resp); err != nil {
					t.Fatalf("response is not an ExportTraceServiceResponse: %v", err)
				}
				msg = resp.GetPartialSuccess().GetErrorMessage()
				if tt.wantMsg != "" && resp.GetPartialSuccess().GetRejectedSpans() != 2 {
					t.Errorf("rejected %d spans, want 2", resp.GetPartialSuccess().GetRejectedSpans())
				}
			} else {
				var st status.Status
				if err := unmarshal(w.Body.Bytes(), &st); err != nil {
					t.Fatalf("error body is not a google.rpc.Status: %v", err)
				}
				msg = st.Message
			}
			if !strings.Contains(msg, tt.wantMsg) || (tt.wantMsg == "" && msg != "") {
				t.Errorf("message %q, want %q", msg, tt.wantMsg)
			}
			if got, _ := rec.got(); len(got) != tt.wantSpans {
				t.Errorf("consumer got %d spans, want %d", len(got), tt.wantSpans)
			}
		})
	}
}
