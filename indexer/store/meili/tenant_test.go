package meili

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meilisearch/meilisearch-go"

	"github.com/meshtrace/meshtrace/indexer/document"
	"github.com/meshtrace/meshtrace/indexer/query"
	"github.com/meshtrace/meshtrace/indexer/store"
	"github.com/meshtrace/meshtrace/indexer/tenant"
	meiliproc "github.com/meshtrace/meshtrace/testenv/meilisearch"
)

// meiliKeys makes, with the master key, the two keys `indexer meili-keys` makes for prefix (same uids,
// actions and indexes) and returns their values; they are deleted when the test ends.
func meiliKeys(t *testing.T, srv *meiliproc.Server, prefix string) (indexerKey, searchKey string) {
	t.Helper()
	for _, k := range []struct {
		role    string
		actions []string
		value   *string
	}{{"indexer", IndexerActions, &indexerKey}, {"search", SearchActions, &searchKey}} {
		*k.value = createKey(t, srv, &meilisearch.Key{UID: KeyUID(k.role, prefix), Name: "meshtrace " + k.role,
			Actions: k.actions, Indexes: []string{prefix + "*"}})
	}
	return indexerKey, searchKey
}

// createKey creates key with the master key, deleted when the test ends, and returns its value.
func createKey(t *testing.T, srv *meiliproc.Server, key *meilisearch.Key) string {
	t.Helper()
	c := adminClient(srv)
	k, err := c.CreateKey(key)
	if err != nil {
		t.Fatalf("create key %s: %v", key.Name, err)
	}
	t.Cleanup(func() { _, _ = c.DeleteKey(k.UID) })
	return k.Key
}

// tenantFixture is the documents of two tenants: team-a has 4 spans in traces T1 and T2, team-b 3 spans in
// T1 (the same trace id: a trace crossing tenants has a document per tenant) and T3. Every span has
// attr.http.response.status_code 200, a number, whose facet Meilisearch recounts with a multi-search.
func tenantFixture() ([]document.Span, []document.Trace) {
	t1, t2, t3 := strings.Repeat("1", 32), strings.Repeat("2", 32), strings.Repeat("3", 32)
	var spans []document.Span
	var traces []document.Trace
	n := 0
	for _, x := range []struct {
		tenant string
		trace  string
		spans  int
	}{{"team-a", t1, 3}, {"team-a", t2, 1}, {"team-b", t1, 2}, {"team-b", t3, 1}} {
		start := int64(1_700_000_000_000_000 + n)
		for i := 0; i < x.spans; i++ {
			n++
			id := strings.Repeat("0", 15) + string(rune('a'+n))
			spans = append(spans, document.Span{ID: document.SpanDocID(x.tenant, x.trace, id), Tenant: x.tenant,
				TraceID: x.trace, SpanID: id, Name: "GET /x", Kind: "server", Service: "svc-" + x.tenant,
				Start: start + int64(i), End: start + int64(i) + 10, Duration: 10, StatusCode: "unset",
				Attr: map[string]any{"http.response.status_code": 200}})
		}
		traces = append(traces, document.Trace{ID: document.TraceDocID(x.tenant, x.trace), Tenant: x.tenant,
			TraceID: x.trace, RootService: "svc-" + x.tenant, RootName: "GET /x", Start: start,
			End: start + int64(x.spans) + 10, Duration: int64(x.spans) + 10, SpanCount: x.spans,
			Services: []string{"svc-" + x.tenant}})
	}
	return spans, traces
}

func mustScope(t *testing.T, tenants ...string) tenant.Scope {
	t.Helper()
	s, err := tenant.Of(tenants...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// tenantsOf returns the tenants of the documents of res, sorted and distinct, and checks Total against the
// hits.
func tenantsOf(t *testing.T, res store.Result) []string {
	t.Helper()
	var ts []string
	for _, s := range res.Spans {
		ts = append(ts, s.Tenant)
	}
	for _, tr := range res.Traces {
		ts = append(ts, tr.Tenant)
	}
	if len(ts) != res.Total {
		t.Errorf("%d hits, Total %d", len(ts), res.Total)
	}
	slices.Sort(ts)
	return slices.Compact(ts)
}

// checkScopes writes the fixture into s and checks what each scope reads: Search without any tenant filter
// (spans and traces, Total too), Facet (including its multi-search recounts), GetTraces and Fields.
func checkScopes(t *testing.T, s *Store) {
	spans, traces := tenantFixture()
	ctx := context.Background()
	if err := s.Write(ctx, spans, traces); err != nil {
		t.Fatal(err)
	}
	teamA := tenant.NewContext(ctx, mustScope(t, "team-a"))
	teamB := tenant.NewContext(ctx, mustScope(t, "team-b"))
	both := tenant.NewContext(ctx, mustScope(t, "team-b", "team-a"))
	all := tenant.NewContext(ctx, tenant.All())
	for _, tt := range []struct {
		name                string
		ctx                 context.Context
		tenants             []string
		nSpans, nTraces     int
		services            map[string]int // span facet "service"
		statusCount         int            // span facet attr.http.response.status_code, value 200
		getTraces           []string       // ids GetTraces finds among every trace id
		fieldsErr, enforced bool
	}{
		{"team-a", teamA, []string{"team-a"}, 4, 2, map[string]int{"svc-team-a": 4}, 4, ids(traces[:2]), true, true},
		{"team-b", teamB, []string{"team-b"}, 3, 2, map[string]int{"svc-team-b": 3}, 3, ids(traces[2:]), true, true},
		{"team-a,team-b", both, []string{"team-a", "team-b"}, 7, 4, map[string]int{"svc-team-a": 4, "svc-team-b": 3}, 7, ids(traces), true, true},
		{"all", all, []string{"team-a", "team-b"}, 7, 4, map[string]int{"svc-team-a": 4, "svc-team-b": 3}, 7, ids(traces), false, false},
		{"no scope", ctx, []string{"team-a", "team-b"}, 7, 4, map[string]int{"svc-team-a": 4, "svc-team-b": 3}, 7, ids(traces), false, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rd, err := s.reader(tt.ctx)
			if err != nil {
				t.Fatal(err)
			}
			if enforced, _ := s.TenantTokens(); enforced && rd.filter != nil {
				t.Fatalf("with tenant tokens the store adds the filter %s itself: the test would not show Meilisearch enforcing the scope", rd.filter)
			}
			for _, ix := range []struct {
				index store.Index
				want  int
			}{{store.Spans, tt.nSpans}, {store.Traces, tt.nTraces}} {
				res, err := s.Search(tt.ctx, store.Request{Index: ix.index, Limit: 100})
				if err != nil {
					t.Fatalf("search %s: %v", ix.index, err)
				}
				if got := tenantsOf(t, res); res.Total != ix.want || !slices.Equal(got, tt.tenants) {
					t.Errorf("search %s without a tenant filter: Total %d of tenants %v, want %d of %v", ix.index, res.Total, got, ix.want, tt.tenants)
				}
				// A page past the first counts the same.
				res, err = s.Search(tt.ctx, store.Request{Index: ix.index, Limit: 1, Offset: 1})
				if err != nil || res.Total != ix.want {
					t.Errorf("search %s, second page: Total %d (%v), want %d", ix.index, res.Total, err, ix.want)
				}
			}
			counts, err := s.Facet(tt.ctx, store.Spans, nil, "service", 0)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]int{}
			for _, c := range counts {
				got[c.Value] = c.Count
			}
			if !mapsEqual(got, tt.services) {
				t.Errorf("facet service = %v, want %v", got, tt.services)
			}
			counts, err = s.Facet(tt.ctx, store.Spans, nil, "attr.http.response.status_code", 0)
			if err != nil {
				t.Fatal(err)
			}
			if len(counts) != 1 || counts[0].Value != "200" || counts[0].Count != tt.statusCount {
				t.Errorf("facet attr.http.response.status_code (recounted by multi-search) = %v, want 200: %d", counts, tt.statusCount)
			}
			counts, err = s.Facet(tt.ctx, store.Traces, nil, "services", 0)
			if err != nil {
				t.Fatal(err)
			}
			if n := len(counts); n != len(tt.tenants) {
				t.Errorf("facet services of traces = %v, want the services of %v", counts, tt.tenants)
			}
			found, err := s.GetTraces(tt.ctx, ids(traces))
			if err != nil {
				t.Fatal(err)
			}
			if got := sortedIDs(found); !slices.Equal(got, tt.getTraces) {
				t.Errorf("GetTraces(every id) = %v, want %v", got, tt.getTraces)
			}
			_, err = s.Fields(tt.ctx)
			if tt.fieldsErr != (err != nil) || err != nil && !errors.Is(err, ErrScopeNotEnforced) {
				t.Errorf("Fields: %v, want an error wrapping ErrScopeNotEnforced: %v", err, tt.fieldsErr)
			}
		})
	}
	t.Run("explicit filter on another tenant", func(t *testing.T) {
		other := &query.Compare{Field: tenant.Field, Op: query.Eq, Value: query.Value{Str: "team-b"}}
		for _, ix := range []store.Index{store.Spans, store.Traces} {
			res, err := s.Search(teamA, store.Request{Index: ix, Filter: other})
			if err != nil {
				t.Fatal(err)
			}
			if res.Total != 0 || len(res.Spans)+len(res.Traces) != 0 {
				t.Errorf("team-a searching %s for tenant = team-b: %d hits, want none", ix, res.Total)
			}
			// Without a scope, the same filter finds team-b's documents: tenant is filterable.
			if res, err := s.Search(ctx, store.Request{Index: ix, Filter: other}); err != nil || res.Total == 0 || !slices.Equal(tenantsOf(t, res), []string{"team-b"}) {
				t.Errorf("searching %s for tenant = team-b without a scope: %d hits (%v), want team-b's", ix, res.Total, err)
			}
		}
		counts, err := s.Facet(teamA, store.Spans, other, "service", 0)
		if err != nil || len(counts) != 0 {
			t.Errorf("team-a counting services of tenant = team-b: %v (%v), want none", counts, err)
		}
	})
}

func ids(traces []document.Trace) []string {
	var out []string
	for _, t := range traces {
		out = append(out, t.ID)
	}
	slices.Sort(out)
	return out
}

func sortedIDs(traces []document.Trace) []string { return ids(traces) }

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestTenantTokens runs the store with the keys `indexer meili-keys` makes (an index management key and a
// search-only key, neither allowed to read keys), as in production: Open recognizes the search key's uid,
// and Meilisearch itself restricts each read to its tenant scope.
func TestTenantTokens(t *testing.T) {
	t.Parallel()
	srv := sharedServer(t)
	s := openStore(t, srv, func(c *Config) {
		c.APIKey, c.SearchAPIKey = meiliKeys(t, srv, c.IndexPrefix)
	})
	if enforced, why := s.TenantTokens(); !enforced {
		t.Fatalf("tenant tokens not used with the keys of meili-keys: %s", why)
	}
	if s.tokens.keyUID != KeyUID("search", s.cfg.IndexPrefix) {
		t.Fatalf("search key uid %s, want meili-keys' %s", s.tokens.keyUID, KeyUID("search", s.cfg.IndexPrefix))
	}
	checkScopes(t, s)

	// The token of team-a, sent by hand: Meilisearch applies its rules whatever the request asks, and the
	// documents route (which tenant tokens do not cover) refuses it.
	tok, err := s.tokens.get(mustScope(t, "team-a"))
	if err != nil {
		t.Fatal(err)
	}
	for _, ix := range []string{s.uid(store.Spans), s.uid(store.Traces)} {
		for _, filter := range []string{`tenant = "team-b"`, `tenant IN ["team-a", "team-b"]`, `NOT tenant = "team-a"`} {
			res, err := tok.client.Index(ix).Search("", &meilisearch.SearchRequest{Filter: filter})
			if err != nil {
				t.Fatal(err)
			}
			for _, h := range res.Hits {
				var d struct {
					Tenant string `json:"tenant"`
				}
				if err := h.DecodeInto(&d); err != nil {
					t.Fatal(err)
				}
				if d.Tenant != "team-a" {
					t.Errorf("team-a's token, %s with filter %s: a document of %q", ix, filter, d.Tenant)
				}
			}
			if filter != `tenant IN ["team-a", "team-b"]` && res.EstimatedTotalHits != 0 {
				t.Errorf("team-a's token, %s with filter %s: %d hits, want none", ix, filter, res.EstimatedTotalHits)
			}
		}
		req, _ := http.NewRequest("GET", srv.URL+"/indexes/"+ix+"/documents", nil)
		req.Header.Set("Authorization", "Bearer "+tok.token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("GET %s/documents with a tenant token: HTTP %d, want 403", ix, resp.StatusCode)
		}
	}
}

// TestTenantTokensKeyUID checks how Open finds the search key's uid, and that it fails when it cannot.
func TestTenantTokensKeyUID(t *testing.T) {
	t.Parallel()
	srv := sharedServer(t)
	ctx := context.Background()
	open := func(t *testing.T, edit func(*Config)) (*Store, error) {
		t.Helper()
		cfg := testConfig(t, srv)
		edit(&cfg)
		s, err := Open(ctx, cfg)
		if err == nil {
			t.Cleanup(func() { s.Close() })
		}
		return s, err
	}
	mustOpen := func(t *testing.T, edit func(*Config)) *Store {
		t.Helper()
		s, err := open(t, edit)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		if enforced, why := s.TenantTokens(); !enforced {
			t.Fatalf("no tenant tokens: %s", why)
		}
		return s
	}
	t.Run("MeiliKeysForAShorterPrefix", func(t *testing.T) {
		// meili-keys makes keys for the indexes <prefix>*; the store's own prefix may be longer.
		var keysPrefix string
		s := mustOpen(t, func(c *Config) {
			keysPrefix = c.IndexPrefix
			c.IndexPrefix += "sub-"
			c.APIKey, c.SearchAPIKey = meiliKeys(t, srv, keysPrefix)
		})
		if s.tokens.keyUID != KeyUID("search", keysPrefix) {
			t.Errorf("search key uid %s, want meili-keys' for %s", s.tokens.keyUID, keysPrefix)
		}
		checkScopes(t, s)
	})
	t.Run("LookedUpWithTheMasterKey", func(t *testing.T) {
		uid := "3f0a7c1e-2b4d-4e6f-8a9b-0c1d2e3f4a5b"
		mustOpen(t, func(c *Config) {
			c.SearchAPIKey = createKey(t, srv, &meilisearch.Key{UID: uid, Name: "lookup", Actions: SearchActions, Indexes: []string{c.IndexPrefix + "*"}})
		})
	})
	t.Run("Configured", func(t *testing.T) {
		var uid string
		s := mustOpen(t, func(c *Config) {
			indexerKey, _ := meiliKeys(t, srv, c.IndexPrefix)
			uid = "7d6c5b4a-3928-4716-a5b4-c3d2e1f0a9b8"
			c.APIKey, c.SearchAPIKeyUID = indexerKey, uid
			c.SearchAPIKey = createKey(t, srv, &meilisearch.Key{UID: uid, Name: "configured", Actions: SearchActions, Indexes: []string{c.IndexPrefix + "*"}})
		})
		if s.tokens.keyUID != uid {
			t.Errorf("search key uid %s, want %s", s.tokens.keyUID, uid)
		}
	})
	t.Run("UnknownUIDFailsOpen", func(t *testing.T) {
		_, err := open(t, func(c *Config) {
			c.APIKey, _ = meiliKeys(t, srv, c.IndexPrefix)
			c.SearchAPIKey = createKey(t, srv, &meilisearch.Key{Name: "anonymous", Actions: SearchActions, Indexes: []string{c.IndexPrefix + "*"}})
		})
		if err == nil || !strings.Contains(err.Error(), "SearchAPIKeyUID") {
			t.Fatalf("Open with a search key of unknown uid: %v, want an error naming SearchAPIKeyUID", err)
		}
		t.Log(err)
	})
	t.Run("WrongConfiguredUIDFailsOpen", func(t *testing.T) {
		_, err := open(t, func(c *Config) {
			c.APIKey, c.SearchAPIKey = meiliKeys(t, srv, c.IndexPrefix)
			c.SearchAPIKeyUID = KeyUID("indexer", c.IndexPrefix)
		})
		if err == nil || !strings.Contains(err.Error(), "SearchAPIKeyUID") {
			t.Fatalf("Open with a wrong SearchAPIKeyUID: %v, want an error naming it", err)
		}
	})
	t.Run("SearchKeyMissingAnIndexFailsOpen", func(t *testing.T) {
		_, err := open(t, func(c *Config) {
			c.SearchAPIKey = createKey(t, srv, &meilisearch.Key{Name: "spans only", Actions: SearchActions, Indexes: []string{c.IndexPrefix + "spans"}})
		})
		if err == nil || !strings.Contains(err.Error(), "may not search") {
			t.Fatalf("Open with a search key that may not search the trace index: %v, want a refusal", err)
		}
	})
	t.Run("MasterKeyFallsBack", func(t *testing.T) {
		s, err := open(t, func(*Config) {}) // testConfig: the master key only
		if err != nil {
			t.Fatal(err)
		}
		if enforced, why := s.TenantTokens(); enforced || !strings.Contains(why, "master key") {
			t.Fatalf("TenantTokens() = %v, %q; want not enforced, because of the master key", enforced, why)
		}
		// The store then adds the scope's filter itself.
		checkScopes(t, s)
	})
	t.Run("RequireTenantTokens", func(t *testing.T) {
		_, err := open(t, func(c *Config) { c.RequireTenantTokens = true })
		if err == nil || !strings.Contains(err.Error(), "master key") {
			t.Fatalf("Open with RequireTenantTokens and the master key: %v, want a refusal", err)
		}
		mustOpen(t, func(c *Config) {
			c.RequireTenantTokens = true
			c.APIKey, c.SearchAPIKey = meiliKeys(t, srv, c.IndexPrefix)
		})
	})
}

// TestTenantTokenCache checks that tokens are signed once per scope and reused until half their life is
// left, that the cache is bounded, and what a token says.
func TestTenantTokenCache(t *testing.T) {
	now := time.Now()
	c := newTenantTokens(Config{URL: "http://127.0.0.1:1", HTTPClient: http.DefaultClient, RetryFor: 2 * time.Minute},
		KeyUID("search", "meshtrace-"), "secret", []string{"p-spans", "p-traces"})
	c.now = func() time.Time { return now }
	get := func(tenants ...string) *tenantToken {
		t.Helper()
		tok, err := c.get(mustScope(t, tenants...))
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	a := get("team-a")
	if b := get("team-a"); b != a || c.signatures != 1 {
		t.Fatalf("the second token of team-a was signed again (%d signatures)", c.signatures)
	}
	ab := get("team-b", "team-a")
	if ab == a || get("team-a", "team-b") != ab || c.signatures != 2 {
		t.Fatalf("scopes {team-a, team-b} in either order: %d signatures, want 2", c.signatures)
	}

	// The token: HS256, the key's uid, both indexes filtered to the scope, expiring in tenantTokenTTL.
	parts := strings.Split(ab.token, ".")
	if len(parts) != 3 {
		t.Fatalf("token %q is not a JWT", ab.token)
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims struct {
		APIKeyUID   string `json:"apiKeyUid"`
		SearchRules map[string]struct {
			Filter string `json:"filter"`
		} `json:"searchRules"`
		Exp int64 `json:"exp"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	want := `"tenant" IN ["team-a", "team-b"]`
	if claims.APIKeyUID != c.keyUID || len(claims.SearchRules) != 2 || claims.SearchRules["p-spans"].Filter != want ||
		claims.SearchRules["p-traces"].Filter != want || claims.Exp != now.Add(tenantTokenTTL).Unix() {
		t.Fatalf("claims %s, want uid %s, filter %s on both indexes, exp %d", payload, c.keyUID, want, now.Add(tenantTokenTTL).Unix())
	}

	// Reused while more than half of its life is left, then signed again.
	now = now.Add(tenantTokenTTL/2 - time.Second)
	if get("team-a") != a {
		t.Fatal("the token of team-a was signed again with more than half of its life left")
	}
	now = now.Add(2 * time.Second)
	if a2 := get("team-a"); a2 == a || c.signatures != 3 || !a2.expires.Equal(now.Add(tenantTokenTTL)) {
		t.Fatalf("the token of team-a was not signed again with less than half of its life left (%d signatures)", c.signatures)
	}

	// Bounded.
	c.max = 8
	for i := range 50 {
		get("t" + strings.Repeat("x", i))
		if len(c.entries) > c.max {
			t.Fatalf("%d cached tokens, at most %d", len(c.entries), c.max)
		}
	}

	if ttl, keep := tokenLifetime(10 * time.Minute); ttl != 22*time.Minute || keep != 11*time.Minute {
		t.Errorf("tokenLifetime(RetryFor 10m) = %v, %v; want the token to outlive the retries", ttl, keep)
	}
}

// TestTenantTokenReuse checks on a real server that searches of one scope share one token.
func TestTenantTokenReuse(t *testing.T) {
	t.Parallel()
	srv := sharedServer(t)
	s := openStore(t, srv, func(c *Config) { c.APIKey, c.SearchAPIKey = meiliKeys(t, srv, c.IndexPrefix) })
	ctx := tenant.NewContext(context.Background(), mustScope(t, "team-a"))
	for range 5 {
		if _, err := s.Search(ctx, store.Request{Index: store.Spans}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Facet(ctx, store.Spans, nil, "service", 0); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Search(tenant.NewContext(context.Background(), mustScope(t, "team-b")), store.Request{Index: store.Spans}); err != nil {
		t.Fatal(err)
	}
	if s.tokens.signatures != 2 {
		t.Errorf("%d tokens signed for 11 reads of 2 scopes, want 2", s.tokens.signatures)
	}
	// A zero scope is refused, not read unrestricted.
	if _, err := s.Search(tenant.NewContext(context.Background(), tenant.Scope{}), store.Request{Index: store.Spans}); err == nil {
		t.Error("a search with the zero scope succeeded")
	}
}

// TestKeyUIDIsMeiliKeys pins KeyUID to the uids `indexer meili-keys` has made (its keyUID; a change would
// make Open miss existing keys).
func TestKeyUIDIsMeiliKeys(t *testing.T) {
	for _, tt := range []struct{ role, prefix, want string }{
		{"search", "meshtrace-", "0243c031-5feb-403a-82e4-57354db0d02c"},
		{"indexer", "meshtrace-", "5dc70504-c7d7-4de3-a76e-fe663d9abf81"},
	} {
		if got := KeyUID(tt.role, tt.prefix); got != tt.want {
			t.Errorf("KeyUID(%q, %q) = %s, want %s", tt.role, tt.prefix, got, tt.want)
		}
	}
}
