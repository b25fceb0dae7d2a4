package receiver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
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
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/meshtrace/meshtrace/indexer/document"
	"github.com/meshtrace/meshtrace/indexer/flatten"
	"github.com/meshtrace/meshtrace/indexer/wal"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// recorder is a Log that keeps what it is given; it refuses the first `refuse` calls as a full log.
type recorder struct {
	mu      sync.Mutex
	records [][]byte
	calls   int
	refuse  int
	err     error // returned by every call when set
}

func (r *recorder) Append(_ context.Context, parts ...[]byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	if r.err != nil {
		return r.err
	}
	if r.calls <= r.refuse {
		return fmt.Errorf("%w: 10 of 10 bytes used", wal.ErrFull)
	}
	r.records = append(r.records, bytes.Join(parts, nil))
	return nil
}

// got returns the documents of the records logged, as the pipeline will decode them, and the calls.
func (r *recorder) got(t *testing.T) ([]document.Span, int) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	var docs []document.Span
	for _, rec := range r.records {
		var err error
		if docs, _, err = flatten.FromProtobuf(docs, rec, flatten.Limits{}); err != nil {
			t.Fatalf("logged record does not decode: %v", err)
		}
	}
	return docs, r.calls
}

func newReceiver(t testing.TB, l Log, cfg Config) *Receiver {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quiet
	}
	r, err := New(l, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
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
		srv := httptest.NewServer(newReceiver(t, rec, Config{}))
		defer srv.Close()
		exp, err := otlptracehttp.New(context.Background(), otlptracehttp.WithEndpointURL(srv.URL+TracesPath),
			otlptracehttp.WithCompression(compression))
		if err != nil {
			t.Fatal(err)
		}
		want := emit(t, exp)
		got, _ := rec.got(t)
		checkSpans(t, got, want)
	}
}

func startGRPC(t *testing.T, l Log, cfg Config) string {
	t.Helper()
	s := newReceiver(t, l, cfg).GRPCServer()
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
	addr := startGRPC(t, rec, Config{})
	exp, err := otlptracegrpc.New(context.Background(), otlptracegrpc.WithEndpoint(addr), otlptracegrpc.WithInsecure(),
		otlptracegrpc.WithCompressor("gzip"))
	if err != nil {
		t.Fatal(err)
	}
	want := emit(t, exp)
	got, _ := rec.got(t)
	checkSpans(t, got, want)
}

// TestOTelSDKRetriesWhenBacklogged checks that real exporters understand the refusal of a full log (HTTP 429 +
// Retry-After, gRPC RESOURCE_EXHAUSTED + RetryInfo), come back and get their spans logged.
func TestOTelSDKRetriesWhenBacklogged(t *testing.T) {
	tests := []struct {
		name  string
		delay string // what the exporter is told to wait for
		dial  func(t *testing.T, rec *recorder) (sdktrace.SpanExporter, error)
	}{
		{"http", "the 1s Retry-After", func(t *testing.T, rec *recorder) (sdktrace.SpanExporter, error) {
			srv := httptest.NewServer(newReceiver(t, rec, Config{FullRetryAfter: time.Second}))
			t.Cleanup(srv.Close)
			return otlptracehttp.New(context.Background(), otlptracehttp.WithEndpointURL(srv.URL+TracesPath),
				otlptracehttp.WithRetry(otlptracehttp.RetryConfig{Enabled: true, InitialInterval: time.Millisecond, MaxInterval: time.Millisecond, MaxElapsedTime: time.Minute}))
		}},
		{"grpc", "the 1s RetryInfo delay", func(t *testing.T, rec *recorder) (sdktrace.SpanExporter, error) {
			return otlptracegrpc.New(context.Background(), otlptracegrpc.WithEndpoint(startGRPC(t, rec, Config{FullRetryAfter: time.Second})), otlptracegrpc.WithInsecure(),
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
			got, calls := rec.got(t)
			if calls != 3 {
				t.Fatalf("log called %d times, want 3 (refused, retried, second export)", calls)
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
		log         *recorder
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
		{name: "log full", contentType: "application/json", body: []byte(goodJSON), log: &recorder{refuse: 1}, wantCode: 429, wantMsg: "ingest backlog full", wantRetry: "5"},
		{name: "disk full", contentType: "application/json", body: []byte(goodJSON),
			log: &recorder{err: fmt.Errorf("wal: write: %w", errors.New("no space left on device"))}, wantCode: 503, wantMsg: "cannot write the ingest log: wal: write: no space left on device", wantRetry: "5"},
		{name: "stopping", contentType: "application/json", body: []byte(goodJSON),
			log: &recorder{err: wal.ErrClosed}, wantCode: 503, wantMsg: "shutting down", wantRetry: "1"},
		{name: "all spans rejected are not logged", contentType: "application/json", log: &recorder{err: wal.ErrClosed},
			body:     []byte(`{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"x","name":"bad"}]}]}]}`),
			wantCode: 200, wantMsg: "1 span rejected"},
		{name: "limit", contentType: "application/json", body: []byte(`{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"` + strings.Repeat("n", 300) + `"}]}]}]}`),
			wantCode: 400, wantMsg: "a value of 300 bytes exceeds the limit of 200 (MaxValueBytes)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := tt.log
			if rec == nil {
				rec = &recorder{}
			}
			h := newReceiver(t, rec, Config{MaxBodyBytes: 1024, Limits: flatten.Limits{MaxValueBytes: 200}})
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
				if want := map[bool]int64{true: 2, false: 0}[tt.wantSpans > 0]; tt.wantSpans > 0 && resp.GetPartialSuccess().GetRejectedSpans() != want {
					t.Errorf("rejected %d spans, want %d", resp.GetPartialSuccess().GetRejectedSpans(), want)
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
			if got, _ := rec.got(t); len(got) != tt.wantSpans {
				t.Errorf("consumer got %d spans, want %d", len(got), tt.wantSpans)
			}
		})
	}
}
