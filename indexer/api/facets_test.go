package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/indexer/document"
	"github.com/meshtrace/meshtrace/indexer/store/meili"
	meiliproc "github.com/meshtrace/meshtrace/testenv/meilisearch"
)

// The routes answered by facet counts (services, operations, /api/v1/facets) are tested over a real
// Meilisearch (the pinned binary `make tools` installs, see testenv/meilisearch; a missing binary fails the
// test, naming the fix), one process shared by the package's tests, each API under its own index prefix;
// the Jaeger lists over the embedded store too (listStores).

var sharedMeili struct {
	once sync.Once
	srv  *meiliproc.Server
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if sharedMeili.srv != nil {
		if err := sharedMeili.srv.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}
	os.Exit(code)
}

// serveCounted serves an API over a Meilisearch store of its own holding traces, rolled up as the pipeline
// does.
func serveCounted(t *testing.T, traces [][]document.Span) *httptest.Server {
	t.Helper()
	sharedMeili.once.Do(func() {
		sharedMeili.srv, sharedMeili.err = meiliproc.Start(context.Background(), meiliproc.Config{MaxIndexingThreads: 1, MaxIndexingMemory: "256 MiB"})
	})
	if sharedMeili.err != nil {
		t.Fatalf("Meilisearch: %v", sharedMeili.err)
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	st, err := meili.Open(context.Background(), meili.Config{URL: sharedMeili.srv.URL, APIKey: sharedMeili.srv.Key,
		IndexPrefix: "api-test-" + hex.EncodeToString(b[:]) + "-", Linger: 2 * time.Millisecond, RetryInitial: 5 * time.Millisecond,
		RetryFor: 5 * time.Second, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return serveTracesOn(t, st, traces)
}

// listStores serve the tests of the lists (services, operations) over each store.
var listStores = []struct {
	name  string
	serve func(*testing.T, [][]document.Span) *httptest.Server
}{{"embedded", serveTraces}, {"meilisearch", serveCounted}}

// TestFacets checks whole answers of GET /api/v1/facets.
func TestFacets(t *testing.T) {
	srv := serveCounted(t, shopTraces())
	facets := func(q, field, limit string) string {
		return "/api/v1/facets?q=" + url.QueryEscape(q) + "&field=" + url.QueryEscape(field) + "&limit=" + limit
	}
	tests := []struct {
		path, want string
	}{
		{facets("error=true since=1h", "customer_id", ""),
			`{"query":"error=true since=1h","field":"attr.customer_id","values":[{"value":"123","count":1}],"index_lag_seconds":0}`},
		{facets("since=1h", "customer_id", "1"), // a tie: the first value, and more exist
			`{"query":"since=1h","field":"attr.customer_id","values":[{"value":"123","count":3}],"truncated":true,"index_lag_seconds":0}`},
		{facets("", "service", "0"),
			`{"query":"","field":"service","values":[{"value":"checkout","count":2},{"value":"gateway","count":2},{"value":"inventory-service","count":2}],"index_lag_seconds":0}`},
		{facets("trace.duration>500ms", "service", ""), // a trace condition: the spans of the slow trace
			`{"query":"trace.duration>500ms","field":"service","values":[{"value":"checkout","count":1},{"value":"gateway","count":1},{"value":"inventory-service","count":1}],"index_lag_seconds":0}`},
		{facets(`"connection reset"`, "service", ""), // free text
			`{"query":"\"connection reset\"","field":"service","values":[{"value":"inventory-service","count":1}],"index_lag_seconds":0}`},
		{facets("service=gateway", "trace.service", ""), // a trace field counts traces
			`{"query":"service=gateway","field":"services","values":[{"value":"checkout","count":2},{"value":"gateway","count":2},{"value":"inventory-service","count":2}],"index_lag_seconds":0}`},
		{facets("", "status", ""),
			`{"query":"","field":"status_code","values":[{"value":"unset","count":5},{"value":"error","count":1}],"index_lag_seconds":0}`},
		{facets("", "http.response.status_code", ""), // numbers
			`{"query":"","field":"attr.http.response.status_code","values":[{"value":"200","count":6}],"index_lag_seconds":0}`},
		{facets("service=nobody", "name", ""),
			`{"query":"service=nobody","field":"name","values":[],"index_lag_seconds":0}`},
	}
	for _, tt := range tests {
		code, body := rawGet(t, srv, tt.path)
		if code != http.StatusOK || !sameJSON(t, body, tt.want) {
			t.Errorf("GET %s: %d %s\nwant 200 %s", tt.path, code, body, tt.want)
		}
	}
}

// TestFacetsErrors checks the 400s of GET /api/v1/facets: each names what is wrong.
func TestFacetsErrors(t *testing.T) {
	srv := serveCounted(t, nil)
	tests := []struct {
		path, want string
		pos        int
	}{
		{"/api/v1/facets?field=service&q=" + url.QueryEscape("duration>>5"), "query: at position", 10},
		{"/api/v1/facets?q=error=true", "field is required", 0},
		{"/api/v1/facets?field=duration", `field "duration": bad search request: cannot count the values of "duration" in the spans index`, 0},
		{"/api/v1/facets?field=trace.edges", `cannot count the values of "keys.edges" in the traces index`, 0},
		{"/api/v1/facets?field=" + url.QueryEscape("attr.*"), "cannot count", 0},
		{"/api/v1/facets?field=service&limit=1001", "limit must be an integer from 0 to 1000", 0},
		{"/api/v1/facets?field=service&limit=-1", "limit must be an integer from 0 to 1000", 0},
		{"/api/v1/facets?field=service&limit=ten", "limit must be an integer from 0 to 1000", 0},
		{"/api/v1/facets?field=service&q=" + url.QueryEscape("customer_id>5"), "<, <=, > and >= apply to", 0}, // refused by the store
	}
	for _, tt := range tests {
		var res ErrorResponse
		get(t, srv, tt.path, http.StatusBadRequest, &res)
		if !strings.Contains(res.Error, tt.want) || (tt.pos != 0 && res.Position != tt.pos) {
			t.Errorf("%s: error %+v, want %q (position %d)", tt.path, res, tt.want, tt.pos)
		}
	}
}
