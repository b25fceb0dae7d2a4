package meili

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/meilisearch/meilisearch-go"

	"github.com/meshtrace/meshtrace/indexer/query"
	"github.com/meshtrace/meshtrace/indexer/store"
	"github.com/meshtrace/meshtrace/indexer/tenant"
)

// Tenant scopes in Meilisearch.
//
// A read whose context carries a restricted tenant.Scope (tenant.FromContext: a scope that is not All) is
// sent to Meilisearch with a tenant token instead of the search key: a JWT signed with Config.SearchAPIKey
// (else APIKey) whose searchRules give both indexes the filter `tenant IN [the scope's tenants]`.
// Meilisearch ANDs that filter with the request's own, so a request that forgot the scope's filter (querysvc
// adds it) still sees only the scope's documents, and a token of one tenant cannot reach another's documents
// whatever filter it asks for. A context with no scope (the write path: the rollup reads traces back) or the
// scope All uses the search key as before, unrestricted.
//
// Read paths under a restricted scope:
//   - Search and Facet (its searches and its multi-search recounts): sent with the scope's tenant token.
//   - GetTraces: Meilisearch's documents route ignores tenant tokens, so it is run as a search with the token
//     (filter on id, at most min(1000, MaxTotalHits) ids per search) instead of through the documents route.
//   - Fields: reads the fields index through the documents route and the span index's stats, neither of which
//     a tenant token can restrict; it fails closed (ErrScopeNotEnforced).
//   - Write and DeleteBefore ignore the scope (they are not reads).
//
// A scope in the context that is neither All nor names a tenant (the zero tenant.Scope) fails every read.
//
// Tokens live tenantTokenTTL (10 minutes; longer when Config.RetryFor is long, so that one request's retries
// never outlive its token), and one is cached per scope (at most tenantTokenCacheSize scopes) and reused
// until half of its life is left, so a search signs no JWT. Meilisearch checks the expiry against its own
// clock: the indexer's and Meilisearch's clocks may differ by less than that half.
//
// Signing a token needs the search key's uid, which Open finds once, in this order, each candidate checked by
// a search with a token signed with it on both indexes (which also checks that the key may search them):
//  1. Config.SearchAPIKeyUID, when set (a wrong one fails Open);
//  2. the list of keys (GET /keys), read with APIKey, then with the search key itself: works when either may
//     read keys (keys.get, or the master key); a search key not in the list is the master key;
//  3. the uids `indexer meili-keys` gives its search keys (KeyUID("search", p)) for each leading part p of
//     IndexPrefix, longest first: its keys are made for a prefix of the store's indexes and lack keys.get.
//
// When none of them is the key's uid, Open fails, saying so. Meilisearch cannot enforce scopes at all when
// the search key is the master key (a tenant token is signed with an API key, never the master key) or when
// no key is configured (a Meilisearch without a master key authenticates nothing): then Open logs a warning,
// the first restricted read logs an error, and restricted reads are only restricted by the store, which adds
// the scope's filter to each of them itself (GetTraces searching as with a token) -- unless
// Config.RequireTenantTokens is set, which makes Open fail instead. TenantTokens reports which.

// ErrScopeNotEnforced is returned by a read under a restricted tenant scope that Meilisearch could not
// restrict to the scope (Fields).
var ErrScopeNotEnforced = errors.New("meili: this read cannot be restricted to a tenant scope")

const (
	// tenantTokenTTL is how long a tenant token is valid (see tokenLifetime).
	tenantTokenTTL = 10 * time.Minute
	// tenantTokenCacheSize bounds the scopes whose tokens are cached.
	tenantTokenCacheSize = 1024
)

// tokenLifetime returns how long a token lives and the life it must still have to be used: tenantTokenTTL
// and half of it, or, when one request's retries (Config.RetryFor) plus a minute would outlast that half,
// twice that and half of it.
func tokenLifetime(retryFor time.Duration) (ttl, keep time.Duration) {
	ttl = max(tenantTokenTTL, 2*(retryFor+time.Minute))
	return ttl, ttl / 2
}

// KeyUID is the uid `indexer meili-keys` gives the key of role ("indexer" or "search") for the index prefix
// prefix: a UUID (version 4 layout) derived from both, so that running the command again finds its keys,
// and Open can sign tenant tokens with a search key that may not read its own uid.
func KeyUID(role, prefix string) string {
	sum := sha256.Sum256([]byte("meshtrace meili-keys\x00" + role + "\x00" + prefix))
	u := sum[:16]
	u[6] = u[6]&0x0f | 0x40 // version 4
	u[8] = u[8]&0x3f | 0x80 // RFC 4122 variant
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

// tenantTokens makes, and caches per scope, the tenant tokens of the search key and clients using them.
type tenantTokens struct {
	cfg        Config // for the clients
	keyUID     string
	key        string
	indexes    []string // the uids of the span and trace indexes
	ttl, keep  time.Duration
	max        int
	now        func() time.Time
	mu         sync.Mutex
	entries    map[string]*tenantToken // by the scope's tenants, comma-separated
	signatures int                     // tokens signed, for tests
}

// tenantToken is one token and a client sending it.
type tenantToken struct {
	token   string
	client  meilisearch.ServiceManager
	expires time.Time
}

func newTenantTokens(cfg Config, keyUID, key string, indexes []string) *tenantTokens {
	ttl, keep := tokenLifetime(cfg.RetryFor)
	return &tenantTokens{cfg: cfg, keyUID: keyUID, key: key, indexes: indexes, ttl: ttl, keep: keep,
		max: tenantTokenCacheSize, now: time.Now, entries: map[string]*tenantToken{}}
}

// get returns the token of scope, a restricted scope, signing a new one when the cached one has less than
// keep left.
func (c *tenantTokens) get(scope tenant.Scope) (*tenantToken, error) {
	tenants := scope.Tenants()
	if len(tenants) == 0 {
		return nil, fmt.Errorf("meili: tenant token for %s: no tenant", scope)
	}
	k := strings.Join(tenants, ",") // a tenant holds no comma (tenant.Check)
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.entries[k]; e != nil && now.Add(c.keep).Before(e.expires) {
		return e, nil
	}
	filter, err := compileFilter(scope.Filter())
	if err != nil {
		return nil, err
	}
	rules := map[string]any{}
	for _, uid := range c.indexes {
		rules[uid] = map[string]any{"filter": filter}
	}
	expires := now.Add(c.ttl)
	// GenerateTenantToken is a method of a client but uses only what it is given: no request is sent.
	token, err := newClient(c.cfg, "").GenerateTenantToken(c.keyUID, rules,
		&meilisearch.TenantTokenOptions{APIKey: c.key, ExpiresAt: expires.UTC()})
	if err != nil {
		return nil, fmt.Errorf("meili: tenant token for %s: %w", scope, err)
	}
	c.signatures++
	if _, ok := c.entries[k]; !ok && len(c.entries) >= c.max {
		for ek, e := range c.entries { // first the tokens that would be signed again anyway
			if !now.Add(c.keep).Before(e.expires) {
				delete(c.entries, ek)
			}
		}
		for ek := range c.entries { // then any one
			if len(c.entries) < c.max {
				break
			}
			delete(c.entries, ek)
		}
	}
	e := &tenantToken{token: token, client: newClient(c.cfg, token), expires: expires}
	c.entries[k] = e
	return e, nil
}

// reader is how one read goes to Meilisearch: with which client, restricted by which filter added by the
// store.
type reader struct {
	client meilisearch.ServiceManager
	// filter is the scope's filter when the store must add it itself (Meilisearch cannot enforce scopes with
	// the configured keys); nil otherwise.
	filter query.Expr
	// restricted is true under a restricted scope, whose reads must not use the documents route.
	restricted bool
}

// reader returns how a read with ctx is sent: unrestricted with the search key when ctx carries no scope or
// All, else with the scope's tenant token (or, when Meilisearch cannot enforce scopes, the search key and the
// scope's filter). A scope that is neither All nor names a tenant is refused.
func (s *Store) reader(ctx context.Context) (reader, error) {
	scope, ok := tenant.FromContext(ctx)
	if !ok || scope.IsAll() {
		return reader{client: s.search}, nil
	}
	if !scope.Valid() {
		return reader{}, fmt.Errorf("meili: a read with an invalid tenant scope (no tenant) is refused")
	}
	if s.tokens == nil {
		s.unenforcedOnce.Do(func() {
			s.log.Error("a read restricted to tenants is not restricted by Meilisearch, only by the filter the store adds: "+
				"Meilisearch cannot enforce tenant scopes with the configured keys", "reason", s.unenforced, "scope", scope.String())
		})
		return reader{client: s.search, filter: scope.Filter(), restricted: true}, nil
	}
	t, err := s.tokens.get(scope)
	if err != nil {
		return reader{}, err
	}
	return reader{client: t.client, restricted: true}, nil
}

// TenantTokens reports whether Meilisearch enforces the tenant scopes of reads (with tenant tokens) and, if
// not, why (the store then only adds the scope's filter itself).
func (s *Store) TenantTokens() (enforced bool, why string) {
	return s.tokens != nil, s.unenforced
}

// setupTenantTokens finds the search key's uid (see the top of this file) and sets s.tokens, or s.unenforced
// when Meilisearch cannot enforce scopes with the configured keys.
func (s *Store) setupTenantTokens(ctx context.Context) error {
	key := cmp.Or(s.cfg.SearchAPIKey, s.cfg.APIKey)
	indexes := []string{s.uid(store.Spans), s.uid(store.Traces)}
	uid, why, err := s.searchKeyUID(ctx, key, indexes)
	if err != nil {
		return err
	}
	if uid == "" {
		if s.cfg.RequireTenantTokens {
			return fmt.Errorf("meili: RequireTenantTokens: Meilisearch cannot enforce tenant scopes: %s", why)
		}
		s.unenforced = why
		s.log.Warn("Meilisearch will not enforce the tenant scopes of reads: reads restricted to tenants are filtered by the store only",
			"reason", why)
		return nil
	}
	s.tokens = newTenantTokens(s.cfg, uid, key, indexes)
	s.log.Debug("tenant scopes are enforced with tenant tokens", "search_key_uid", uid)
	return nil
}

// searchKeyUID returns the uid of key, checked by signing a token with it. It returns "" and why when key
// cannot sign tenant tokens (none, the master key), and an error when its uid is not found.
func (s *Store) searchKeyUID(ctx context.Context, key string, indexes []string) (uid, why string, err error) {
	if key == "" {
		return "", "no API key is configured (a Meilisearch without a master key authenticates nothing)", nil
	}
	if u := s.cfg.SearchAPIKeyUID; u != "" {
		if err := s.checkKeyUID(ctx, key, u, indexes); err != nil {
			return "", "", fmt.Errorf("meili: SearchAPIKeyUID %s: Meilisearch refused a tenant token signed with the search key and it: "+
				"it is not the search key's uid, or the key may not search %s: %w", u, strings.Join(indexes, " and "), err)
		}
		return u, "", nil
	}
	var tried []string
	askers := []string{s.cfg.APIKey}
	if key != s.cfg.APIKey {
		askers = append(askers, key)
	}
	for i, asker := range askers {
		if asker == "" {
			continue
		}
		who := [...]string{"APIKey", "the search key"}[i]
		u, err := s.findKey(ctx, asker, key)
		var ae *APIError
		switch {
		case err == nil && u != "":
			if err := s.checkKeyUID(ctx, key, u, indexes); err != nil {
				return "", "", fmt.Errorf("meili: a tenant token signed with the search key (uid %s) was refused: "+
					"the key may not search %s: %w", u, strings.Join(indexes, " and "), err)
			}
			return u, "", nil
		case err == nil:
			// Whoever asked may read keys, and the search key is none of them: the master key.
			return "", "the search key is the master key (not an API key): tenant tokens are signed with an API key", nil
		case errors.As(err, &ae) && ae.Code == "missing_master_key":
			return "", "Meilisearch runs without a master key: it authenticates nothing", nil
		case errors.As(err, &ae) && (ae.Status == http.StatusUnauthorized || ae.Status == http.StatusForbidden):
			tried = append(tried, who+" may not read keys")
		default:
			return "", "", err
		}
	}
	var last error
	for n := len(s.cfg.IndexPrefix); n > 0; n-- {
		u := KeyUID("search", s.cfg.IndexPrefix[:n])
		err := s.checkKeyUID(ctx, key, u, indexes)
		if err == nil {
			return u, "", nil
		}
		var ae *APIError
		if !errors.As(err, &ae) || (ae.Status != http.StatusUnauthorized && ae.Status != http.StatusForbidden) {
			return "", "", err
		}
		last = err
	}
	tried = append(tried, fmt.Sprintf("it is not a search key `indexer meili-keys` made for a prefix of %q (or it may not search %s)",
		s.cfg.IndexPrefix, strings.Join(indexes, " and ")))
	return "", "", fmt.Errorf("meili: cannot sign tenant tokens, which enforce the tenant scopes of reads: the uid of the search API key is unknown "+
		"(%s): set Config.SearchAPIKeyUID to it, or give APIKey the keys.get action (last refusal: %v)", strings.Join(tried, "; "), last)
}

// findKey returns the uid of the API key whose value is key, listing the keys (GET /keys) with asker; ""
// if no API key has that value. The key is looked for in the list rather than asked for by value (GET
// /keys/<key>), which would write its value into Meilisearch's request log.
func (s *Store) findKey(ctx context.Context, asker, key string) (string, error) {
	const what, page = "list the API keys", 1000
	for offset := 0; ; offset += page {
		path := fmt.Sprintf("/keys?offset=%d&limit=%d", offset, page)
		v, err := retry(ctx, s, what, func() (any, error) { return s.getJSONWith(ctx, asker, path, what) })
		if err != nil {
			return "", err
		}
		var list struct {
			Results []struct{ UID, Key string }
			Total   int
		}
		if err := remarshal(v, &list); err != nil {
			return "", fmt.Errorf("meili: %s: %w", what, err)
		}
		for _, k := range list.Results {
			if k.Key == key {
				return k.UID, nil
			}
		}
		if len(list.Results) < page || offset+page >= list.Total {
			return "", nil
		}
	}
}

// remarshal decodes v, a decoded JSON value, into out.
func remarshal(v, out any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, out)
}

// checkKeyUID sends a multi-search of both indexes with a tenant token signed with key and uid: nil if
// Meilisearch accepts it, its refusal (an APIError, HTTP 403) if uid is not key's or key may not search.
func (s *Store) checkKeyUID(ctx context.Context, key, uid string, indexes []string) error {
	if !meilisearch.IsValidUUID(uid) {
		return fmt.Errorf("meili: %q is not a key uid (a UUID)", uid)
	}
	probe, err := tenant.Of("meshtrace-probe")
	if err != nil {
		return err
	}
	c := newTenantTokens(s.cfg, uid, key, indexes)
	t, err := c.get(probe)
	if err != nil {
		return err
	}
	zero := int64(0)
	multi := &meilisearch.MultiSearchRequest{}
	for _, ix := range indexes {
		multi.Queries = append(multi.Queries, &meilisearch.SearchRequest{IndexUID: ix, Page: 1, HitsPerPage: &zero})
	}
	_, err = retry(ctx, s, "search with a tenant token", func() (*meilisearch.MultiSearchResponse, error) {
		return t.client.MultiSearchWithContext(ctx, multi)
	})
	return err
}
