package receiver

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/meshtrace/meshtrace/indexer/flatten"
	"github.com/meshtrace/meshtrace/indexer/record"
)

// bearer is a Tenancy of fixed ingest tokens.
type bearer map[string]string

func (b bearer) Tenant(header func(string) string) (string, error) {
	tok, ok := strings.CutPrefix(header("Authorization"), "Bearer ")
	if !ok {
		return "", errors.New("no bearer token")
	}
	if tn, ok := b[tok]; ok {
		return tn, nil
	}
	return "", errors.New("unknown ingest token")
}

var tokens = bearer{"token-of-team-a": "team-a", "token-of-team-b": "team-b"}

// tenantsOf decodes the tenant of each logged record.
func tenantsOf(t *testing.T, rec *recorder) []string {
	t.Helper()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var out []string
	for _, r := range rec.records {
		tn, _, err := record.Decode(r)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, tn)
	}
	return out
}

// TestTenantIsTheSendersNotTheSpans sends with real OTel SDK exporters over both transports: the record's
// tenant is the one of the token (whatever the spans' resource says), and a request without a good token is
// refused as unauthenticated with nothing logged.
func TestTenantIsTheSendersNotTheSpans(t *testing.T) {
	cfg := Config{Tenancy: tokens}
	for _, tc := range []struct {
		name  string
		token string
		want  string // tenant, or "" for a refusal
	}{
		{"team a", "token-of-team-a", "team-a"},
		{"team b", "token-of-team-b", "team-b"},
		{"wrong token", "token-of-team-c", ""},
		{"no token", "", ""},
	} {
		headers := map[string]string{}
		if tc.token != "" {
			headers["Authorization"] = "Bearer " + tc.token
		}
		t.Run(tc.name+"/http", func(t *testing.T) {
			rec := &recorder{}
			srv := httptest.NewServer(newReceiver(t, rec, cfg))
			defer srv.Close()
			exp, err := otlptracehttp.New(context.Background(), otlptracehttp.WithEndpointURL(srv.URL+TracesPath),
				otlptracehttp.WithHeaders(headers), otlptracehttp.WithRetry(otlptracehttp.RetryConfig{Enabled: false}))
			if err != nil {
				t.Fatal(err)
			}
			checkTenant(t, rec, emitErr(exp), tc.want)
		})
		t.Run(tc.name+"/grpc", func(t *testing.T) {
			rec := &recorder{}
			exp, err := otlptracegrpc.New(context.Background(), otlptracegrpc.WithEndpoint(startGRPC(t, rec, cfg)),
				otlptracegrpc.WithInsecure(), otlptracegrpc.WithHeaders(headers), otlptracegrpc.WithRetry(otlptracegrpc.RetryConfig{Enabled: false}))
			if err != nil {
				t.Fatal(err)
			}
			err = emitErr(exp)
			checkTenant(t, rec, err, tc.want)
			if tc.want == "" && status.Code(errors.Unwrap(err)) != codes.Unauthenticated && !strings.Contains(err.Error(), "Unauthenticated") {
				t.Errorf("gRPC refusal %v, want UNAUTHENTICATED", err)
			}
		})
	}
}

func checkTenant(t *testing.T, rec *recorder, err error, want string) {
	t.Helper()
	got := tenantsOf(t, rec)
	if want == "" {
		if err == nil || len(got) != 0 {
			t.Fatalf("accepted without a good token: err %v, records of tenants %v", err, got)
		}
		if !strings.Contains(err.Error(), "unauthenticated") {
			t.Errorf("refusal %q does not say unauthenticated", err)
		}
		return
	}
	if err != nil || len(got) != 1 || got[0] != want {
		t.Fatalf("err %v, records of tenants %v, want one of %s", err, got, want)
	}
}

// TestUnauthenticatedHTTPAnswer checks the OTLP/HTTP answer itself: 401, a Bearer challenge, and the body
// never read (nothing in flight, nothing logged).
func TestUnauthenticatedHTTPAnswer(t *testing.T) {
	rec := &recorder{}
	srv := httptest.NewServer(newReceiver(t, rec, Config{Tenancy: tokens}))
	defer srv.Close()
	resp, err := http.Post(srv.URL+TracesPath, "application/x-protobuf", bytes.NewReader(validBody(t)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
		t.Fatalf("status %d, WWW-Authenticate %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	if _, calls := rec.got(t); calls != 0 {
		t.Fatalf("%d appends for an unauthenticated request", calls)
	}
}

// TestForgedRecordHeaderIsRefused sends a protobuf body that starts like a tenant record: it is not valid
// OTLP (field number 0), so it is refused instead of being logged as another tenant's.
func TestForgedRecordHeaderIsRefused(t *testing.T) {
	rec := &recorder{}
	srv := httptest.NewServer(newReceiver(t, rec, Config{}))
	defer srv.Close()
	forged := record.Encode("team-b", validBody(t))
	resp, err := http.Post(srv.URL+TracesPath, "application/x-protobuf", bytes.NewReader(forged))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("forged record answered %d, want 400", resp.StatusCode)
	}
	if got := tenantsOf(t, rec); len(got) != 0 {
		t.Fatalf("forged record logged as %v", got)
	}
}

// TestTenantRateLimit gives each tenant 3 spans a second: a tenant's second request of 2 spans is refused
// with 429 and a Retry-After, another tenant is not affected, and nothing refused is logged.
func TestTenantRateLimit(t *testing.T) {
	rec := &recorder{}
	srv := httptest.NewServer(newReceiver(t, rec, Config{Tenancy: tokens, TenantLimits: TenantLimits{SpansPerSecond: 3},
		Limits: flatten.Limits{MaxSpans: 2}}))
	defer srv.Close()
	post := func(token string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, srv.URL+TracesPath, bytes.NewReader(validBody(t)))
		req.Header.Set("Content-Type", "application/x-protobuf")
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if r := post("token-of-team-a"); r.StatusCode != http.StatusOK {
		t.Fatalf("first request: %d", r.StatusCode)
	}
	r := post("token-of-team-a")
	if r.StatusCode != http.StatusTooManyRequests || r.Header.Get("Retry-After") == "" {
		t.Fatalf("over the limit: %d, Retry-After %q", r.StatusCode, r.Header.Get("Retry-After"))
	}
	if r := post("token-of-team-b"); r.StatusCode != http.StatusOK {
		t.Fatalf("another tenant: %d", r.StatusCode)
	}
	if got := tenantsOf(t, rec); len(got) != 2 || got[0] != "team-a" || got[1] != "team-b" {
		t.Fatalf("logged records of %v", got)
	}
}

// validBody is a protobuf export of two spans whose resource claims to be of tenant team-b (which must not
// matter).
func validBody(t *testing.T) []byte {
	t.Helper()
	req := meshRequest(2)
	res := req.ResourceSpans[0].Resource
	res.Attributes = append(res.Attributes, &commonpb.KeyValue{Key: "tenant",
		Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: "team-b"}}})
	b, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// emitErr exports two spans through exp and returns the export's error.
func emitErr(exp sdktrace.SpanExporter) error {
	stubs := tracetest.SpanStubs{{Name: "a", SpanContext: trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1, 2, 3}, SpanID: trace.SpanID{4, 5, 6}}),
		StartTime: time.Now(), EndTime: time.Now().Add(time.Millisecond),
		Resource: resource.NewSchemaless(attribute.String("service.name", "checkout"), attribute.String("tenant", "team-b"))}}
	defer exp.Shutdown(context.Background())
	return exp.ExportSpans(context.Background(), stubs.Snapshots())
}
