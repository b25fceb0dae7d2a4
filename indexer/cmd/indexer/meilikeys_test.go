package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meilisearch/meilisearch-go"

	"github.com/meshtrace/meshtrace/indexer/store"
	"github.com/meshtrace/meshtrace/indexer/store/meili"
	"github.com/meshtrace/meshtrace/indexer/store/storetest"
	meiliproc "github.com/meshtrace/meshtrace/testenv/meilisearch"
)

var quietLog = slog.New(slog.NewTextHandler(io.Discard, nil))

// meiliKeys runs `indexer meili-keys` with args (and stdin) and returns the keys it printed, by variable.
func meiliKeys(t *testing.T, stdin string, args ...string) (map[string]string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := newRootCmd()
	cmd.SetArgs(append([]string{"meili-keys"}, args...))
	cmd.SetIn(strings.NewReader(stdin))
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	err := cmd.Execute()
	keys := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			keys[k] = v
		}
	}
	return keys, out.String(), err
}

// status sends a request to Meilisearch with key and returns the HTTP status.
func status(t *testing.T, method, url, key, body string) int {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func randomPrefix(t *testing.T, name string) string {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return "meshtrace-" + name + "-" + hex.EncodeToString(b[:]) + "-"
}

func storeConfig(url, key, searchKey, prefix string) meili.Config {
	return meili.Config{URL: url, APIKey: key, SearchAPIKey: searchKey, IndexPrefix: prefix, Linger: 2 * time.Millisecond,
		RetryInitial: 5 * time.Millisecond, RetryFor: 5 * time.Second, Logger: quietLog}
}

// exercise makes every kind of request the store makes: Open (create, inspect and configure the indexes),
// Write (documents and the fields index, polling tasks), Fields (stats and documents), GetTraces, Search and
// DeleteBefore.
func exercise(ctx context.Context, cfg meili.Config) error {
	s, err := meili.Open(ctx, cfg)
	if err != nil {
		return err
	}
	defer s.Close()
	f := storetest.NewFixture()
	if err := s.Write(ctx, f.Spans, f.Traces); err != nil {
		return err
	}
	if _, err := s.Fields(ctx); err != nil {
		return err
	}
	if tr, err := s.GetTraces(ctx, []string{f.Traces[0].TraceID}); err != nil || len(tr) != 1 {
		return errorOr(err, "GetTraces found %d traces, want 1", len(tr))
	}
	if res, err := s.Search(ctx, store.Request{Index: store.Spans, Limit: 1}); err != nil || res.Total != len(f.Spans) {
		return errorOr(err, "Search total %d, want %d", res.Total, len(f.Spans))
	}
	return s.DeleteBefore(ctx, storetest.Now.Add(-time.Hour), nil)
}

func errorOr(err error, format string, args ...any) error {
	if err != nil {
		return err
	}
	return fmt.Errorf(format, args...)
}

// TestMeiliKeysLeastPrivilege runs `indexer meili-keys` against a real Meilisearch and checks what the two keys
// it makes can and cannot do: the store passes its conformance suite with them, and the indexer serves with
// them; the search key can only search; the indexer key can touch no other index, no key and does not
// search; the store fails without any one of the indexer key's actions; running the command again gives the
// same keys, and a key changed behind its back is put right.
func TestMeiliKeysLeastPrivilege(t *testing.T) {
	srv := meiliproc.StartTest(t, meiliproc.Config{MaxIndexingThreads: 2, MaxIndexingMemory: "512 MiB"})
	master := meilisearch.New(srv.URL, meilisearch.WithAPIKey(srv.Key))

	t.Setenv(MasterKeyEnv, srv.Key)
	keys, out, err := meiliKeys(t, "", "--meili-url", srv.URL)
	if err != nil {
		t.Fatalf("meili-keys: %v", err)
	}
	if !regexp.MustCompile(`^MESHTRACE_MEILI_KEY=[0-9a-f]{64}\nMESHTRACE_MEILI_SEARCH_KEY=[0-9a-f]{64}\n$`).MatchString(out) {
		t.Fatalf("meili-keys printed %q, want two env-file lines", out)
	}
	indexerKey, searchKey := keys[indexerKeyEnv], keys[searchKeyEnv]
	if indexerKey == searchKey || indexerKey == srv.Key || searchKey == srv.Key {
		t.Fatal("the keys are not distinct from each other and from the master key")
	}

	t.Run("Idempotent", func(t *testing.T) {
		t.Setenv(MasterKeyEnv, "")
		file := filepath.Join(t.TempDir(), "master.key")
		if err := os.WriteFile(file, []byte(srv.Key+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]string{{"--master-key-file", file}, {"--master-key-file", "-"}} {
			_, again, err := meiliKeys(t, srv.Key+"\n", append([]string{"--meili-url", srv.URL}, args...)...)
			if err != nil || again != out {
				t.Fatalf("meili-keys %v: %v\n%q, want the same keys as the first run", args, err, again)
			}
		}
		all, err := master.GetKeys(&meilisearch.KeysQuery{Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		var ours []string
		for _, k := range all.Results {
			if strings.HasPrefix(k.Name, "meshtrace ") {
				ours = append(ours, k.Name)
			}
		}
		if len(ours) != 2 {
			t.Fatalf("keys on the server named meshtrace *: %v, want two", ours)
		}
		for _, args := range [][]string{{}, {"--master-key-file", filepath.Join(t.TempDir(), "none")}} {
			if _, _, err := meiliKeys(t, "", append([]string{"--meili-url", srv.URL}, args...)...); err == nil {
				t.Fatalf("meili-keys %v without a master key succeeded", args)
			}
		}
	})

	t.Run("WrongMasterKey", func(t *testing.T) {
		t.Setenv(MasterKeyEnv, strings.Repeat("0", 64))
		start := time.Now()
		_, _, err := meiliKeys(t, "", "--meili-url", srv.URL)
		if err == nil || !strings.Contains(err.Error(), "refused the master key") || time.Since(start) > 10*time.Second {
			t.Fatalf("meili-keys with a wrong master key: %v after %v, want a quick refusal", err, time.Since(start))
		}
	})

	t.Run("Conformance", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) store.Store {
			s, err := meili.Open(context.Background(), storeConfig(srv.URL, indexerKey, searchKey, randomPrefix(t, "conf")))
			if err != nil {
				t.Fatalf("Open with the restricted keys: %v", err)
			}
			return s
		})
	})

	t.Run("Serve", func(t *testing.T) {
		c := newServeConfig()
		c.otlpHTTPAddr, c.otlpGRPCAddr, c.apiAddr, c.dataDir = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", t.TempDir()
		c.shutdownTimeout, c.pipeline.BatchTimeout = 10*time.Second, 5*time.Millisecond
		c.meili.URL, c.meili.APIKey, c.meili.SearchAPIKey = srv.URL, indexerKey, searchKey
		ctx, cancel := context.WithCancel(context.Background())
		ready, done := make(chan listeners, 1), make(chan error, 1)
		go func() { done <- serve(ctx, c, quietLog, func(l listeners) { ready <- l }) }()
		var l listeners
		select {
		case l = <-ready:
		case err := <-done:
			cancel()
			t.Fatalf("serve with the restricted keys: %v", err)
		}
		defer func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("serve: %v", err)
			}
		}()
		traceID := sendTrace(t, l).String()
		server := "http://" + l.api.String()
		if stats := waitIndexed(t, server, 3); stats.Written != 3 || stats.WriteErrors != 0 {
			t.Fatalf("ingest stats %+v; want 3 written", stats)
		}
		out := run(t, "search", "--server", server, "--traces", "customer_id=123 service=inventory-service since=1h")
		if !strings.Contains(out, traceID) || !strings.HasSuffix(out, "1 of 1 traces\n") {
			t.Fatalf("search output:\n%s", out)
		}
	})

	// The index the checks below aim at (Serve has made it already, unless run alone).
	if task, err := master.CreateIndex(&meilisearch.IndexConfig{Uid: "meshtrace-spans", PrimaryKey: "id"}); err != nil {
		t.Fatal(err)
	} else if _, err := master.WaitForTask(task.TaskUID, 10*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	spans := srv.URL + "/indexes/meshtrace-spans"
	t.Run("SearchKeyOnlySearches", func(t *testing.T) {
		if st := status(t, "POST", spans+"/search", searchKey, `{"q":""}`); st != http.StatusOK {
			t.Fatalf("search with the search key: HTTP %d, want 200", st)
		}
		for _, r := range []struct{ method, url, body string }{
			{"POST", spans + "/documents", `[{"id":"x"}]`},
			{"GET", spans + "/settings", ""},
			{"PATCH", spans + "/settings", `{"filterableAttributes":[]}`},
			{"GET", spans + "/documents", ""},
			{"POST", spans + "/documents/delete", `{"filter":"start < 0"}`},
			{"DELETE", spans, ""},
			{"POST", srv.URL + "/indexes", `{"uid":"meshtrace-x"}`},
			{"GET", srv.URL + "/keys", ""},
			{"GET", srv.URL + "/tasks", ""},
			{"POST", srv.URL + "/indexes/other/search", `{"q":""}`},
		} {
			if st := status(t, r.method, r.url, searchKey, r.body); st != http.StatusForbidden {
				t.Errorf("search key: %s %s: HTTP %d, want 403", r.method, r.url, st)
			}
		}
	})

	t.Run("IndexerKeyConfined", func(t *testing.T) {
		if st := status(t, "GET", spans+"/stats", indexerKey, ""); st != http.StatusOK {
			t.Fatalf("stats with the indexer key: HTTP %d, want 200", st)
		}
		for _, r := range []struct{ method, url, body string }{
			{"POST", srv.URL + "/keys", `{"actions":["*"],"indexes":["*"],"expiresAt":null}`},
			{"GET", srv.URL + "/keys", ""},
			{"POST", srv.URL + "/indexes", `{"uid":"other-spans","primaryKey":"id"}`},
			{"GET", srv.URL + "/indexes/other-spans", ""},
			{"POST", srv.URL + "/indexes/other-spans/documents", `[{"id":"x"}]`},
			{"PATCH", srv.URL + "/indexes/other-spans/settings", `{"filterableAttributes":[]}`},
			{"POST", spans + "/search", `{"q":""}`},
			{"DELETE", spans, ""},
			{"POST", srv.URL + "/swap-indexes", `[{"indexes":["meshtrace-spans","meshtrace-traces"]}]`},
			{"POST", srv.URL + "/dumps", ""},
		} {
			if st := status(t, r.method, r.url, indexerKey, r.body); st != http.StatusForbidden {
				t.Errorf("indexer key: %s %s: HTTP %d, want 403", r.method, r.url, st)
			}
		}
	})

	t.Run("EveryActionNeeded", func(t *testing.T) {
		ctx := context.Background()
		if err := exercise(ctx, storeConfig(srv.URL, indexerKey, searchKey, randomPrefix(t, "all"))); err != nil {
			t.Fatalf("the store with the indexer key: %v", err)
		}
		for _, action := range meili.IndexerActions {
			k, err := master.CreateKey(&meilisearch.Key{Name: "without " + action, Indexes: []string{"meshtrace-*"},
				Actions: slices.DeleteFunc(slices.Clone(meili.IndexerActions), func(a string) bool { return a == action })})
			if err != nil {
				t.Fatal(err)
			}
			err = exercise(ctx, storeConfig(srv.URL, k.Key, searchKey, randomPrefix(t, "minus")))
			t.Logf("without %s: %v", action, err)
			if err == nil || !strings.Contains(err.Error(), "HTTP 403") {
				t.Errorf("the store without %s: %v, want a refusal (HTTP 403)", action, err)
			}
		}
	})

	t.Run("RecreatesChangedKey", func(t *testing.T) {
		uid := meili.KeyUID("search", "meshtrace-")
		if _, err := master.DeleteKey(uid); err != nil {
			t.Fatal(err)
		}
		if _, err := master.CreateKey(&meilisearch.Key{UID: uid, Name: "meshtrace search", Indexes: []string{"*"},
			Actions: []string{"search", "documents.add"}}); err != nil {
			t.Fatal(err)
		}
		_, again, err := meiliKeys(t, "", "--meili-url", srv.URL)
		if err != nil || again != out {
			t.Fatalf("meili-keys after the search key was widened: %v\n%q, want the same keys", err, again)
		}
		k, err := master.GetKey(uid)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(k.Actions, meili.SearchActions) || !slices.Equal(k.Indexes, []string{"meshtrace-*"}) {
			t.Fatalf("search key after meili-keys: actions %v on %v, want [search] on [meshtrace-*]", k.Actions, k.Indexes)
		}
	})
}

// TestKeyUID: key uids are fixed UUIDs, distinct per role and index prefix.
func TestKeyUID(t *testing.T) {
	v4 := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	seen := map[string]bool{}
	for _, role := range []string{"indexer", "search"} {
		for _, prefix := range []string{"meshtrace-", "staging-"} {
			u := meili.KeyUID(role, prefix)
			if !v4.MatchString(u) || seen[u] || meili.KeyUID(role, prefix) != u {
				t.Fatalf("meili.KeyUID(%q, %q) = %q: not a fixed, distinct UUID", role, prefix, u)
			}
			seen[u] = true
		}
	}
}

// TestApplySecret checks the request `meili-keys --secret` makes, against a fake API server with the service
// account files of a pod.
func TestApplySecret(t *testing.T) {
	var got struct {
		method, path, query, contentType, auth string
		body                                   map[string]any
	}
	api := httptestTLS(t, func(w http.ResponseWriter, r *http.Request) {
		got.method, got.path, got.query = r.Method, r.URL.Path, r.URL.RawQuery
		got.contentType, got.auth = r.Header.Get("Content-Type"), r.Header.Get("Authorization")
		if err := json.NewDecoder(r.Body).Decode(&got.body); err != nil {
			t.Error(err)
		}
		if strings.HasSuffix(r.URL.Path, "/forbidden") {
			w.WriteHeader(http.StatusForbidden)
			io.WriteString(w, `{"kind":"Status","message":"secrets \"forbidden\" is forbidden","reason":"Forbidden"}`)
			return
		}
		io.WriteString(w, `{}`)
	})
	kube := &kubeAPI{base: api.URL, token: "tok", client: api.Client()}
	data := map[string]string{indexerKeyEnv: "ik", searchKeyEnv: "sk"}
	if err := kube.applySecret(context.Background(), "meshtrace", "meshtrace-indexer-meili", data); err != nil {
		t.Fatal(err)
	}
	if got.method != "PATCH" || got.path != "/api/v1/namespaces/meshtrace/secrets/meshtrace-indexer-meili" ||
		got.query != "fieldManager=meshtrace-meili-keys&force=true" || got.contentType != "application/apply-patch+yaml" ||
		got.auth != "Bearer tok" {
		t.Fatalf("request %+v", got)
	}
	want := map[string]any{"MESHTRACE_MEILI_KEY": "aWs=", "MESHTRACE_MEILI_SEARCH_KEY": "c2s="}
	if d, _ := got.body["data"].(map[string]any); !equalJSON(d, want) || got.body["kind"] != "Secret" || got.body["type"] != "Opaque" {
		t.Fatalf("body %v", got.body)
	}
	err := kube.applySecret(context.Background(), "meshtrace", "forbidden", data)
	if err == nil || !strings.Contains(err.Error(), `secrets "forbidden" is forbidden (Forbidden)`) {
		t.Fatalf("refused apply: %v", err)
	}

	// inClusterAPI reads the pod's service account.
	dir := t.TempDir()
	for name, v := range map[string]string{"token": "tok\n", "namespace": "meshtrace\n", "ca.crt": pemOf(api)} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	host, port, _ := strings.Cut(strings.TrimPrefix(api.URL, "https://"), ":")
	t.Setenv("KUBERNETES_SERVICE_HOST", host)
	t.Setenv("KUBERNETES_SERVICE_PORT", port)
	k, ns, err := inClusterAPI(dir)
	if err != nil || ns != "meshtrace" {
		t.Fatalf("inClusterAPI: %v, namespace %q", err, ns)
	}
	if err := k.applySecret(context.Background(), ns, "s", data); err != nil {
		t.Fatalf("apply with the in-cluster config (token, CA): %v", err)
	}
	if _, _, err := inClusterAPI(t.TempDir()); err == nil {
		t.Fatal("inClusterAPI without a service account succeeded")
	}
}

func equalJSON(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

// httptestTLS starts an HTTPS server with handler for the test.
func httptestTLS(t *testing.T, handler http.HandlerFunc) *httptest.Server {
	srv := httptest.NewTLSServer(handler)
	t.Cleanup(srv.Close)
	return srv
}

// pemOf is the PEM certificate of a test server, as a pod's ca.crt holds its cluster's CA.
func pemOf(srv *httptest.Server) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))
}
