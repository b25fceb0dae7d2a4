package main

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/meshtrace/meshtrace/indexer/api"
	meiliproc "github.com/meshtrace/meshtrace/testenv/meilisearch"
)

// issuer is an OpenID Connect provider for tests: discovery and a JWKS of one RSA key, and tokens signed
// with it (or with a key it does not publish).
type issuer struct {
	url          string
	key, foreign *rsa.PrivateKey
}

func newIssuer(t *testing.T) *issuer {
	t.Helper()
	is := &issuer{}
	var err error
	if is.key, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		t.Fatal(err)
	}
	if is.foreign, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	is.url = srv.URL
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{"issuer": is.url, "jwks_uri": is.url + "/jwks",
			"id_token_signing_alg_values_supported": []string{"RS256"}})
	})
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, _ *http.Request) {
		json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &is.key.PublicKey, KeyID: "k1", Algorithm: "RS256", Use: "sig"}}})
	})
	return is
}

// token signs claims for groups, valid for ttl (negative: expired), from iss with key.
func (is *issuer) token(t *testing.T, iss string, key *rsa.PrivateKey, ttl time.Duration, groups ...string) string {
	t.Helper()
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key}, (&jose.SignerOptions{}).WithHeader("kid", "k1"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	raw, err := jwt.Signed(sig).Claims(jwt.Claims{Issuer: iss, Subject: "someone", Audience: jwt.Audience{"meshtrace"},
		IssuedAt: jwt.NewNumericDate(now.Add(-time.Hour)), Expiry: jwt.NewNumericDate(now.Add(ttl))}).
		Claims(map[string]any{"groups": groups}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// export sends one trace part: n spans of service svc in trace tid, with ingest token tok, over OTLP/HTTP or
// OTLP/gRPC. The resource claims tenant "team-b" and the spans carry a "tenant" attribute: neither may count.
func export(t *testing.T, l listeners, grpc bool, tok string, tid trace.TraceID, svc string, n int, first byte) {
	t.Helper()
	ctx := context.Background()
	headers := map[string]string{"Authorization": "Bearer " + tok}
	var exp sdktrace.SpanExporter
	var err error
	if grpc {
		exp, err = otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(l.otlpGRPC.String()), otlptracegrpc.WithInsecure(), otlptracegrpc.WithHeaders(headers))
	} else {
		exp, err = otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL("http://"+l.otlpHTTP.String()+"/v1/traces"), otlptracehttp.WithHeaders(headers))
	}
	if err != nil {
		t.Fatal(err)
	}
	defer exp.Shutdown(ctx)
	res := resource.NewSchemaless(attribute.String("service.name", svc), attribute.String("tenant", "team-b"))
	now := time.Now()
	var stubs tracetest.SpanStubs
	for i := range n {
		stubs = append(stubs, tracetest.SpanStub{Name: fmt.Sprintf("op-%d", i), Resource: res, SpanKind: trace.SpanKindServer,
			SpanContext: trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: trace.SpanID{first, byte(i + 1)}}),
			StartTime:   now.Add(time.Duration(i) * time.Millisecond), EndTime: now.Add(10 * time.Millisecond),
			Attributes: []attribute.KeyValue{attribute.String("tenant", "team-b"), attribute.String("customer_id", "123"),
				attribute.String("customer_hash", hmacHex(hmacKey, "123"))}})
	}
	if err := exp.ExportSpans(ctx, stubs.Snapshots()); err != nil {
		t.Fatalf("export of %s: %v", svc, err)
	}
}

// TestTenancyEndToEnd runs the tenancy suite on the embedded store.
func TestTenancyEndToEnd(t *testing.T) { testTenancy(t, nil) }

// TestTenancyEndToEndMeilisearch runs the tenancy suite on a real Meilisearch, with the keys `indexer
// meili-keys` makes and tenant tokens required, so that Meilisearch itself restricts each tenant's reads.
func TestTenancyEndToEndMeilisearch(t *testing.T) {
	srv := meiliproc.StartTest(t, meiliproc.Config{MaxIndexingThreads: 2, MaxIndexingMemory: "512 MiB"})
	t.Setenv(MasterKeyEnv, srv.Key)
	keys, _, err := meiliKeys(t, "", "--meili-url", srv.URL)
	if err != nil {
		t.Fatalf("meili-keys: %v", err)
	}
	testTenancy(t, func(c *serveConfig) {
		c.meili.URL, c.meili.APIKey, c.meili.SearchAPIKey = srv.URL, keys[indexerKeyEnv], keys[searchKeyEnv]
		c.meili.RequireTenantTokens = true
	})
}

// testTenancy runs `serve` (its config changed by store) with ingest tokens, API tokens and an OpenID
// Connect issuer. Team a sends a trace that team b's service joins (the same trace id, sent with team b's
// token), and a span of team a claims to be team b's, by attribute and by resource. Every read route is then
// asked with no token, a bad one, a JWT of the wrong issuer, an expired one, one signed by an unknown key,
// team a's and team b's JWTs, a static token and an admin's JWT: each sees exactly its tenants' spans, the
// crossing trace shows the hidden part as a count, and the others get 401.
func testTenancy(t *testing.T, store func(*serveConfig)) {
	dir := t.TempDir()
	is := newIssuer(t)
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	l, _ := startServer(t, func(c *serveConfig) {
		c.ingest.TokensFile = write("ingest", "ingest-token-team-a team-a\ningest-token-team-b team-b\n")
		c.auth.TokensFile = write("api", "script-token-of-team-b team-b\n")
		c.auth.OIDCIssuer, c.auth.OIDCAudience, c.auth.AdminValue = is.url, "meshtrace", "platform"
		c.hmacKeyFile = write("hmac", hmacKey)
		if store != nil {
			store(c)
		}
	})
	tid := trace.TraceID{0xab, 0xcd, 1}
	export(t, l, false, "ingest-token-team-a", tid, "checkout", 3, 0xa0)
	export(t, l, true, "ingest-token-team-b", tid, "payments", 2, 0xb0)
	export(t, l, true, "ingest-token-team-b", trace.TraceID{0xab, 0xcd, 2}, "payments", 4, 0xb1)
	server := "http://" + l.api.String()

	admin := is.token(t, is.url, is.key, time.Hour, "platform")
	waitFor := func() {
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			var spans, traces api.SearchResponse
			_, body := call(t, server+"/api/v1/search?q=since%3D1h&limit=1", admin)
			json.Unmarshal([]byte(body), &spans)
			_, body = call(t, server+"/api/v1/search?target=traces&q=since%3D1h&limit=1", admin)
			json.Unmarshal([]byte(body), &traces)
			if spans.Total == 9 && traces.Total == 3 {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatal("the 9 spans and 3 trace documents never became searchable")
	}
	waitFor()

	for _, tc := range []struct {
		name                  string
		token                 string
		status                int // of every data route
		spans, traces, hidden int // search totals; spans of the crossing trace hidden
		services              string
	}{
		{"no token", "", 401, 0, 0, 0, ""},
		{"unknown token", "not-a-token-at-all-really", 401, 0, 0, 0, ""},
		{"wrong issuer", is.token(t, "https://evil.example", is.key, time.Hour, "team-a"), 401, 0, 0, 0, ""},
		{"expired", is.token(t, is.url, is.key, -time.Minute, "team-a"), 401, 0, 0, 0, ""},
		{"unknown key", is.token(t, is.url, is.foreign, time.Hour, "team-a"), 401, 0, 0, 0, ""},
		{"no tenant", is.token(t, is.url, is.key, time.Hour, "Not_A_Tenant"), 403, 0, 0, 0, ""},
		{"team a", is.token(t, is.url, is.key, time.Hour, "team-a"), 200, 3, 1, 2, `["checkout"]`},
		{"team b", is.token(t, is.url, is.key, time.Hour, "team-b"), 200, 6, 2, 3, `["payments"]`},
		{"team b script", "script-token-of-team-b", 200, 6, 2, 3, `["payments"]`},
		{"admin", admin, 200, 9, 3, 0, `["checkout","payments"]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, route := range []string{"/api/v1/search?q=since%3D1h", "/api/v1/search?target=traces&q=since%3D1h",
				"/api/v1/traces/" + tid.String(), "/api/services", "/api/traces?service=payments&lookback=1h",
				"/api/traces/" + tid.String(), "/api/v3/services", "/api/v1/facets?field=service&q=since%3D1h", "/api/dependencies?endTs=" +
					fmt.Sprint(time.Now().Add(time.Minute).UnixMilli()) + "&lookback=3600000"} {
				code, body := call(t, server+route, tc.token)
				wantCode := tc.status
				if strings.HasPrefix(route, "/api/traces/") && wantCode == 200 && tc.spans == 0 {
					wantCode = 404
				}
				if code != wantCode {
					t.Errorf("GET %s: %d, want %d: %s", route, code, wantCode, body)
				}
				if code == 401 && strings.Contains(body, tc.token) && tc.token != "" {
					t.Errorf("GET %s: the refusal quotes the token", route)
				}
			}
			if tc.status != 200 {
				return
			}
			var spans, traces api.SearchResponse
			_, body := call(t, server+"/api/v1/search?q=since%3D1h&limit=100", tc.token)
			json.Unmarshal([]byte(body), &spans)
			_, body = call(t, server+"/api/v1/search?target=traces&q=since%3D1h", tc.token)
			json.Unmarshal([]byte(body), &traces)
			if spans.Total != tc.spans || traces.Total != tc.traces {
				t.Errorf("sees %d spans and %d traces, want %d and %d", spans.Total, traces.Total, tc.spans, tc.traces)
			}
			for _, sp := range spans.Spans {
				if (sp.Service == "checkout") != (sp.Tenant == "team-a") || sp.Attr["tenant"] != "team-b" {
					t.Errorf("span %s of %s has tenant %q (attribute %v): the tenant must be the sender's", sp.ID, sp.Service, sp.Tenant, sp.Attr["tenant"])
				}
			}
			var hashed api.SearchResponse
			_, body = call(t, server+"/api/v1/search?q="+url.QueryEscape(`since=1h customer_hash=hash("123")`), tc.token)
			if json.Unmarshal([]byte(body), &hashed); hashed.Total != tc.spans {
				t.Errorf("hash(\"123\") finds %d spans, want %d: %s", hashed.Total, tc.spans, body)
			}
			var tr api.TraceResponse
			_, body = call(t, server+"/api/v1/traces/"+tid.String(), tc.token)
			json.Unmarshal([]byte(body), &tr)
			if tr.HiddenSpans != tc.hidden || len(tr.Spans)+tr.HiddenSpans != 5 {
				t.Errorf("crossing trace: %d spans shown, %d hidden; want %d hidden of 5", len(tr.Spans), tr.HiddenSpans, tc.hidden)
			}
			if _, body := call(t, server+"/api/services", tc.token); !strings.Contains(body, `"data":`+tc.services) {
				t.Errorf("Jaeger services: %s, want %s", body, tc.services)
			}
		})
	}
	// The CLI sends its token; without one it says why it was refused.
	if out := run(t, "search", "--server", server, "--token", "script-token-of-team-b", "--spans", "since=1h"); !strings.Contains(out, "payments") || strings.Contains(out, "checkout") {
		t.Errorf("indexer search with team b's token:\n%s", out)
	}
	cmd := newRootCmd()
	cmd.SetArgs([]string{"search", "--server", server, "since=1h"})
	cmd.SetOut(io.Discard)
	cmd.SetErr(io.Discard)
	if err := cmd.Execute(); err == nil || !strings.Contains(err.Error(), "unauthenticated") {
		t.Errorf("indexer search without a token: %v, want unauthenticated", err)
	}
	// Open paths need no token; ingest without one is refused.
	if code, _ := call(t, server+"/healthz", ""); code != 200 {
		t.Errorf("/healthz without a token: %d", code)
	}
	resp, err := http.Post("http://"+l.otlpHTTP.String()+"/v1/traces", "application/x-protobuf", strings.NewReader(""))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("OTLP without an ingest token: %d, want 401", resp.StatusCode)
	}
}

// call GETs url with a bearer token (none when empty) and returns the status and body.
func call(t *testing.T, url, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// hmacKey is the HMAC key of the test's hashed tags, as the filter's policy and --hmac-key-file hold it.
const hmacKey = "a-key-only-filter-and-indexer-hold\n"

// hmacHex is a hashed tag's value: the hex HMAC-SHA256 of v (what the filter writes).
func hmacHex(key, v string) string {
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte(v))
	return hex.EncodeToString(m.Sum(nil))
}
