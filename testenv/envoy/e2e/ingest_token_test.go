package e2e

import (
	"context"
	"crypto/hmac"
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

	"github.com/meshtrace/meshtrace/indexer/api"
	"github.com/meshtrace/meshtrace/testenv/artifact"
	"github.com/meshtrace/meshtrace/testenv/envoy"
	"github.com/meshtrace/meshtrace/testenv/indexerproc"
)

// The variables the policy of TestIngestToken names; Envoy hands them to the VM (Wasm.Env, rendered as
// vm_config.environment_variables.key_values), as Istio does from the istio-proxy container's Secret.
const (
	tokenVar = "MESHTRACE_INGEST_TOKEN"
	hmacVar  = "MESHTRACE_HMAC_KEY"
)

// tokenPolicy exports to cluster with the ingest token from tokenVar and hashes x-customer-id into
// customer_id under the key in hmacVar.
func tokenPolicy(cluster string) string {
	return `{"direction": "inbound",
  "export": {"cluster": "` + cluster + `", "authority": "meshtrace-indexer", "flush_interval_ms": 100, "timeout_ms": 2000,
             "max_retries": 0, "token_env": "` + tokenVar + `"},
  "hmac_key_env": "` + hmacVar + `",
  "tags": [{"attribute": "customer_id", "from": [{"header": "x-customer-id"}], "hash": true}]}`
}

// TestIngestToken runs a real `indexer serve --ingest-tokens-file` and, per build, one Envoy whose
// plugins read their ingest token and HMAC key from the VM environment: one listener's VM holds the
// token of tenant team-a, the other's a token the indexer does not know. The first listener's spans must
// arrive as team-a's with the tag hashed under the key; the second's are refused (401) and never indexed,
// while its requests are proxied as usual. Neither the token nor the key shows in Envoy's log.
func TestIngestToken(t *testing.T) {
	builds := artifact.Builds(t)
	const token, wrongToken, key = "ingest-team-a-3b9f0c71d2", "ingest-unknown-77aa01", "hmac-key-from-a-secret"
	dir := t.TempDir()
	tokens := filepath.Join(dir, "ingest-tokens")
	if err := os.WriteFile(tokens, []byte(token+" team-a\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ix, otlp := startIndexerProcess(t, dir, "--ingest-tokens-file", tokens)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) }))
	t.Cleanup(app.Close)

	for _, build := range builds {
		t.Run(build.Name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			wasm := func(vm, cluster, tok string) *envoy.Wasm {
				return &envoy.Wasm{Name: "meshtrace", VMID: vm, File: build.Path, Config: tokenPolicy(cluster),
					Env: map[string]string{tokenVar: tok, hmacVar: key}}
			}
			p, err := envoy.Start(ctx, envoy.Bootstrap{
				Listeners: []envoy.Listener{
					{Name: "known", Direction: envoy.Inbound, Cluster: "app", Wasm: wasm("known", "indexer-known", token)},
					{Name: "unknown", Direction: envoy.Inbound, Cluster: "app", Wasm: wasm("unknown", "indexer-unknown", wrongToken)},
				},
				Clusters: []envoy.Cluster{
					{Name: "app", Address: app.Listener.Addr().String()},
					// Two clusters to the same indexer, so Envoy counts each token's answers apart.
					{Name: "indexer-known", Address: otlp.Host},
					{Name: "indexer-unknown", Address: otlp.Host},
				},
			}, envoy.Options{Dir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("--- envoy.log (tail) ---\n%s", p.LogTail(30))
				}
				p.Close()
			})
			const n = 3
			customer := func(listener string, i int) string { return fmt.Sprintf("%s-%s-%d", build.Name, listener, i) }
			for _, listener := range []string{"unknown", "known"} {
				addr, err := p.ListenerAddr(ctx, listener)
				if err != nil {
					t.Fatal(err)
				}
				for i := range n {
					req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/orders", nil)
					req.Header.Set("X-Customer-Id", customer(listener, i))
					resp, err := client.Do(req)
					if err != nil {
						t.Fatal(err)
					}
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK || string(body) != "ok" {
						t.Fatalf("%s listener, request %d: %d %q; the export must not touch traffic", listener, i, resp.StatusCode, body)
					}
				}
			}

			// The known token: every span indexed, as team-a's, with the tag hashed under the key.
			for i := range n {
				want := hmacHex(key, customer("known", i))
				var r api.SearchResponse
				if !waitFor(10*time.Second, func() bool {
					r = searchProc(t, ix, `customer_id="`+want+`"`)
					return r.Total >= 1
				}) {
					t.Fatalf("customer %s: no span with customer_id %s in the indexer", customer("known", i), want)
				}
				if r.Total != 1 {
					t.Errorf("customer %s: %d spans, want 1", customer("known", i), r.Total)
				}
				s := r.Spans[0]
				if s.Tenant != "team-a" || fmt.Sprint(s.Attr["customer_id"]) != want || s.Attr["url.path"] != "/orders" {
					t.Errorf("customer %s: span tenant %q, customer_id %v, url.path %v; want team-a, %s, /orders",
						customer("known", i), s.Tenant, s.Attr["customer_id"], s.Attr["url.path"], want)
				}
			}
			// The unknown token: the indexer answered 401 (Envoy counts it on the cluster), the filter dropped
			// the batch, and nothing of it is indexed, hashed or not.
			var stats map[string]int64
			if !waitFor(10*time.Second, func() bool {
				stats, err = p.Stats(ctx, `^cluster\.indexer-(known|unknown)\.upstream_rq_[0-9]`)
				return err == nil && stats["cluster.indexer-unknown.upstream_rq_401"] >= 1
			}) {
				t.Fatalf("the indexer never answered the unknown token with 401: stats %v, %v", stats, err)
			}
			if stats["cluster.indexer-unknown.upstream_rq_2xx"] != 0 || stats["cluster.indexer-known.upstream_rq_401"] != 0 ||
				stats["cluster.indexer-known.upstream_rq_2xx"] < 1 {
				t.Errorf("export answers per cluster: %v; want 2xx for the known token only, 401 for the unknown one only", stats)
			}
			for i := range n {
				for _, v := range []string{hmacHex(key, customer("unknown", i)), customer("unknown", i)} {
					if r := searchProc(t, ix, `customer_id="`+v+`"`); r.Total != 0 {
						t.Errorf("a span sent with the unknown token was indexed: %+v", r.Spans)
					}
				}
			}
			log := p.Log()
			for _, secret := range []string{token, wrongToken, key} {
				if strings.Contains(log, secret) {
					t.Errorf("Envoy's log holds a secret (%.8s...)", secret)
				}
			}
		})
	}
}

// searchProc runs a spans query against the API of an indexer process.
func searchProc(t *testing.T, ix *indexerproc.Process, q string) api.SearchResponse {
	t.Helper()
	resp, err := client.Get(ix.APIURL + "/api/v1/search?" + url.Values{"q": {q}, "target": {"spans"}, "limit": {"100"}}.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r api.SearchResponse
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("search %s: %d %s", q, resp.StatusCode, body)
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatalf("search %s: %v", q, err)
	}
	return r
}

func hmacHex(key, v string) string {
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte(v))
	return hex.EncodeToString(m.Sum(nil))
}
