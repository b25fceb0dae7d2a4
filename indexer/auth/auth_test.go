package auth

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/meshtrace/meshtrace/indexer/tenant"
)

// idp is a test OpenID provider: an https server serving discovery and a JWKS of an RSA and an ECDSA key.
type idp struct {
	srv    *httptest.Server
	rsaKey *rsa.PrivateKey
	ecKey  *ecdsa.PrivateKey
}

func newIDP(t *testing.T) *idp {
	t.Helper()
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p := &idp{rsaKey: rk, ecKey: ek}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"issuer":                                p.srv.URL,
			"jwks_uri":                              p.srv.URL + "/keys",
			"authorization_endpoint":                p.srv.URL + "/auth",
			"token_endpoint":                        p.srv.URL + "/token",
			"id_token_signing_alg_values_supported": []string{"RS256", "ES256"},
		})
	})
	mux.HandleFunc("GET /keys", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
			{Key: rk.Public(), KeyID: "rsa-1", Algorithm: "RS256", Use: "sig"},
			{Key: ek.Public(), KeyID: "ec-1", Algorithm: "ES256", Use: "sig"},
		}})
	})
	p.srv = httptest.NewTLSServer(mux)
	t.Cleanup(p.srv.Close)
	return p
}

// sign returns the compact JWT of claims signed with key (kid, alg).
func sign(t *testing.T, key crypto.Signer, kid string, alg jose.SignatureAlgorithm, claims map[string]any) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: key, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func testLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func writeFile(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const (
	audience    = "meshtrace-indexer"
	tokenTeamA  = "static-token-team-a-0123456789"
	tokenAdmin  = "static-token-admin-0123456789"
	tokenTeamAB = "static-token-team-ab-012345678"
)

const tokensFile = `# static tokens
` + tokenTeamA + ` team-a

` + tokenAdmin + `   *
	` + tokenTeamAB + ` team-b,team-a
`

const tenantMap = `# claim value -> tenants
/platform/team-a team-a
sre team-a,team-b
ops-admins *
`

func scopeOf(t *testing.T, ts ...string) tenant.Scope {
	t.Helper()
	s, err := tenant.Of(ts...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestAuthenticate(t *testing.T) {
	p := newIDP(t)
	ctx := context.Background()
	tokens := writeFile(t, "tokens", tokensFile)
	// direct: discovery, no tenant map (claim values are tenant names), an admin value.
	direct, err := New(ctx, Config{TokensFile: tokens, OIDCIssuer: p.srv.URL, OIDCAudience: audience,
		AdminValue: "meshtrace-admins", HTTPClient: p.srv.Client()}, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	// mapped: an explicit JWKS URL (no discovery), a tenant map.
	mapped, err := New(ctx, Config{TokensFile: tokens, OIDCIssuer: p.srv.URL, OIDCJWKSURL: p.srv.URL + "/keys",
		OIDCAudience: audience, TenantMapFile: writeFile(t, "tenant-map", tenantMap), HTTPClient: p.srv.Client()}, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	unknownKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	claims := func(groups any, edit ...func(map[string]any)) map[string]any {
		c := map[string]any{"iss": p.srv.URL, "sub": "alice", "aud": audience, "iat": now.Unix(),
			"exp": now.Add(time.Hour).Unix()}
		if groups != nil {
			c["groups"] = groups
		}
		for _, e := range edit {
			e(c)
		}
		return c
	}
	rsaJWT := func(c map[string]any) string { return sign(t, p.rsaKey, "rsa-1", jose.RS256, c) }
	ecJWT := func(c map[string]any) string { return sign(t, p.ecKey, "ec-1", jose.ES256, c) }
	bearer := func(tok string) string { return "Bearer " + tok }

	all := tenant.All()
	for _, tc := range []struct {
		name    string
		auth    *Authenticator
		header  []string // Authorization header values
		want    tenant.Scope
		wantErr error  // ErrUnauthenticated, ErrForbidden or nil
		errHas  string // in the error text
	}{
		{name: "no token", auth: direct, wantErr: ErrUnauthenticated, errHas: "no Authorization header"},
		{name: "basic scheme", auth: direct, header: []string{"Basic YWxpY2U6c2VjcmV0"}, wantErr: ErrUnauthenticated, errHas: "not \"Bearer <token>\""},
		{name: "no scheme", auth: direct, header: []string{tokenTeamA}, wantErr: ErrUnauthenticated, errHas: "not \"Bearer <token>\""},
		{name: "empty bearer", auth: direct, header: []string{"Bearer "}, wantErr: ErrUnauthenticated, errHas: "empty"},
		{name: "two headers", auth: direct, header: []string{bearer(tokenTeamA), bearer(tokenAdmin)}, wantErr: ErrUnauthenticated, errHas: "more than one"},
		{name: "token too long", auth: direct, header: []string{bearer(strings.Repeat("x", MaxTokenLen+1))}, wantErr: ErrUnauthenticated, errHas: "more than the 8192"},
		{name: "token with a control byte", auth: direct, header: []string{bearer("abc\x01def")}, wantErr: ErrUnauthenticated, errHas: "printable"},
		{name: "garbage token", auth: direct, header: []string{bearer("not-a-token-at-all")}, wantErr: ErrUnauthenticated, errHas: "neither a known static token nor a JWT"},
		{name: "garbage JWT", auth: direct, header: []string{bearer("aaaa.bbbb.cccc")}, wantErr: ErrUnauthenticated, errHas: "malformed"},
		{name: "wrong issuer", auth: direct, header: []string{bearer(rsaJWT(claims([]string{"team-a"}, func(c map[string]any) { c["iss"] = "https://evil.example" })))},
			wantErr: ErrUnauthenticated, errHas: "different provider"},
		{name: "wrong audience", auth: direct, header: []string{bearer(rsaJWT(claims([]string{"team-a"}, func(c map[string]any) { c["aud"] = "another-app" })))},
			wantErr: ErrUnauthenticated, errHas: "audience"},
		{name: "expired", auth: direct, header: []string{bearer(rsaJWT(claims([]string{"team-a"}, func(c map[string]any) { c["exp"] = now.Add(-time.Minute).Unix() })))},
			wantErr: ErrUnauthenticated, errHas: "expired"},
		{name: "not yet valid", auth: direct, header: []string{bearer(rsaJWT(claims([]string{"team-a"}, func(c map[string]any) { c["nbf"] = now.Add(time.Hour).Unix() })))},
			wantErr: ErrUnauthenticated, errHas: "nbf"},
		{name: "unknown key", auth: direct, header: []string{bearer(sign(t, unknownKey, "rsa-2", jose.RS256, claims([]string{"team-a"})))},
			wantErr: ErrUnauthenticated, errHas: "signature"},
		{name: "known kid, other key", auth: direct, header: []string{bearer(sign(t, unknownKey, "rsa-1", jose.RS256, claims([]string{"team-a"})))},
			wantErr: ErrUnauthenticated, errHas: "signature"},
		{name: "tenant A", auth: direct, header: []string{bearer(rsaJWT(claims([]string{"team-a"})))}, want: scopeOf(t, "team-a")},
		{name: "tenant B, ECDSA", auth: direct, header: []string{bearer(ecJWT(claims([]string{"team-b"})))}, want: scopeOf(t, "team-b")},
		{name: "both, other values ignored", auth: direct, header: []string{bearer(rsaJWT(claims([]string{"team-b", "Not A Tenant", "team-a"})))}, want: scopeOf(t, "team-a", "team-b")},
		{name: "claim a string", auth: direct, header: []string{bearer(rsaJWT(claims("team-a")))}, want: scopeOf(t, "team-a")},
		{name: "bearer scheme lowercase", auth: direct, header: []string{"bearer " + rsaJWT(claims([]string{"team-a"}))}, want: scopeOf(t, "team-a")},
		{name: "admin value", auth: direct, header: []string{bearer(rsaJWT(claims([]string{"team-a", "meshtrace-admins"})))}, want: all},
		{name: "no valid tenant name", auth: direct, header: []string{bearer(rsaJWT(claims([]string{"Team A", "/platform/team-a"})))}, wantErr: ErrForbidden, errHas: "none of the 2 values"},
		{name: "no groups claim", auth: direct, header: []string{bearer(rsaJWT(claims(nil)))}, wantErr: ErrForbidden, errHas: `no "groups" claim`},
		{name: "groups claim a number", auth: direct, header: []string{bearer(rsaJWT(claims(42)))}, wantErr: ErrForbidden, errHas: "neither a string nor a list"},
		{name: "mapped group", auth: mapped, header: []string{bearer(rsaJWT(claims([]string{"/platform/team-a"})))}, want: scopeOf(t, "team-a")},
		{name: "mapped groups, union", auth: mapped, header: []string{bearer(ecJWT(claims([]string{"/platform/team-a", "sre"})))}, want: scopeOf(t, "team-a", "team-b")},
		{name: "mapped to every tenant", auth: mapped, header: []string{bearer(rsaJWT(claims([]string{"ops-admins"})))}, want: all},
		{name: "with a map, a tenant name is not a tenant", auth: mapped, header: []string{bearer(rsaJWT(claims([]string{"team-a"})))}, wantErr: ErrForbidden, errHas: "maps to a tenant"},
		{name: "group mapping to nothing", auth: mapped, header: []string{bearer(rsaJWT(claims([]string{"unmapped"})))}, wantErr: ErrForbidden, errHas: "maps to a tenant"},
		{name: "no admin value, admin group", auth: mapped, header: []string{bearer(rsaJWT(claims([]string{"meshtrace-admins"})))}, wantErr: ErrForbidden},
		{name: "static token team-a", auth: direct, header: []string{bearer(tokenTeamA)}, want: scopeOf(t, "team-a")},
		{name: "static token team-a, mapped", auth: mapped, header: []string{bearer(tokenTeamA)}, want: scopeOf(t, "team-a")},
		{name: "static token two tenants", auth: direct, header: []string{bearer(tokenTeamAB)}, want: scopeOf(t, "team-a", "team-b")},
		{name: "static admin token", auth: direct, header: []string{bearer(tokenAdmin)}, want: all},
		{name: "static token prefix", auth: direct, header: []string{bearer(tokenTeamA[:len(tokenTeamA)-1])}, wantErr: ErrUnauthenticated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/api/v1/search?q=x", nil)
			for _, h := range tc.header {
				r.Header.Add("Authorization", h)
			}
			token := ""
			if len(tc.header) > 0 {
				_, token, _ = strings.Cut(tc.header[0], " ")
			}

			// Authenticate.
			got, err := tc.auth.Authenticate(r)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Authenticate: error %v, want %v", err, tc.wantErr)
				}
				other := ErrForbidden
				if tc.wantErr == ErrForbidden {
					other = ErrUnauthenticated
				}
				if errors.Is(err, other) {
					t.Errorf("Authenticate: error %v is also %v", err, other)
				}
				if !strings.Contains(err.Error(), tc.errHas) {
					t.Errorf("Authenticate: error %q does not say %q", err, tc.errHas)
				}
				if len(token) >= 8 && strings.Contains(err.Error(), token) {
					t.Errorf("Authenticate: error %q quotes the token", err)
				}
			} else {
				if err != nil {
					t.Fatalf("Authenticate: %v", err)
				}
				if !sameScope(got, tc.want) {
					t.Fatalf("Authenticate: scope %v, want %v", got, tc.want)
				}
			}

			// Middleware.
			var seen *tenant.Scope
			h := tc.auth.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				s, ok := tenant.FromContext(r.Context())
				if !ok {
					t.Error("next: no scope in the context")
				}
				seen = &s
				w.WriteHeader(http.StatusTeapot)
			}))
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			wantCode := map[error]int{nil: http.StatusTeapot, ErrUnauthenticated: http.StatusUnauthorized, ErrForbidden: http.StatusForbidden}[tc.wantErr]
			if w.Code != wantCode {
				t.Fatalf("Middleware: status %d, want %d (body %s)", w.Code, wantCode, w.Body)
			}
			challenge := w.Header().Get("WWW-Authenticate")
			if tc.wantErr == ErrUnauthenticated && challenge != `Bearer realm="meshtrace"` {
				t.Errorf("Middleware: WWW-Authenticate %q", challenge)
			}
			if tc.wantErr != ErrUnauthenticated && challenge != "" {
				t.Errorf("Middleware: WWW-Authenticate %q on a %d", challenge, w.Code)
			}
			if tc.wantErr == nil {
				if seen == nil || !sameScope(*seen, tc.want) {
					t.Fatalf("Middleware: next saw scope %v, want %v", seen, tc.want)
				}
				return
			}
			if seen != nil {
				t.Fatal("Middleware: next ran for a refused request")
			}
			if ct := w.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Middleware: Content-Type %q", ct)
			}
			var body map[string]any
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
				t.Fatalf("Middleware: body %q: %v", w.Body, err)
			}
			// Not comparing with err itself: go-oidc's not-before error quotes the time now.
			if msg, _ := body["error"].(string); len(body) != 1 || !strings.HasPrefix(msg, tc.wantErr.Error()+": ") || !strings.Contains(msg, tc.errHas) {
				t.Errorf("Middleware: body %s, want {\"error\": \"%v: ...%s...\"}", w.Body, tc.wantErr, tc.errHas)
			}
		})
	}
}

// sameScope reports whether a and b are the same scope.
func sameScope(a, b tenant.Scope) bool {
	return a.Valid() && b.Valid() && a.IsAll() == b.IsAll() && slices.Equal(a.Tenants(), b.Tenants())
}

func TestOpenPaths(t *testing.T) {
	tokens := writeFile(t, "tokens", tokensFile)
	for _, tc := range []struct {
		name   string
		open   []string
		path   string
		header string
		want   int
		scoped bool // next sees a scope
	}{
		{name: "healthz", path: "/healthz", want: http.StatusOK},
		{name: "readyz", path: "/readyz", want: http.StatusOK},
		{name: "metrics", path: "/metrics", want: http.StatusOK},
		{name: "healthz with a bad token", path: "/healthz", header: "Bearer nonsense", want: http.StatusOK},
		{name: "exact match only", path: "/healthz/x", want: http.StatusUnauthorized},
		{name: "search", path: "/api/v1/search", want: http.StatusUnauthorized},
		{name: "web page", path: "/", want: http.StatusUnauthorized},
		{name: "jaeger", path: "/api/traces", want: http.StatusUnauthorized},
		{name: "search with an unknown token", path: "/api/v1/search", header: "Bearer " + strings.Repeat("x", 20), want: http.StatusUnauthorized},
		{name: "search with a token", path: "/api/v1/search", header: "Bearer " + tokenTeamA, want: http.StatusOK, scoped: true},
		{name: "custom open paths", open: []string{"/livez"}, path: "/livez", want: http.StatusOK},
		{name: "custom open paths replace the defaults", open: []string{"/livez"}, path: "/healthz", want: http.StatusUnauthorized},
		{name: "no open paths", open: []string{}, path: "/healthz", want: http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := New(context.Background(), Config{TokensFile: tokens, OpenPaths: tc.open}, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			scoped := false
			h := a.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, scoped = tenant.FromContext(r.Context())
			}))
			r := httptest.NewRequest(http.MethodGet, tc.path, nil)
			if tc.header != "" {
				r.Header.Set("Authorization", tc.header)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tc.want {
				t.Fatalf("status %d, want %d (body %s)", w.Code, tc.want, w.Body)
			}
			if scoped != tc.scoped {
				t.Errorf("next saw a scope: %v, want %v", scoped, tc.scoped)
			}
		})
	}
}

func TestUnauthenticated(t *testing.T) {
	var logs bytes.Buffer
	a, err := New(context.Background(), Config{}, slog.New(slog.NewJSONHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if !a.Unauthenticated() {
		t.Error("Unauthenticated() is false")
	}
	var rec struct {
		Level, Msg string
	}
	if err := json.Unmarshal(logs.Bytes(), &rec); err != nil {
		t.Fatalf("want one log record, got %q: %v", logs.String(), err)
	}
	if rec.Level != "WARN" || !strings.Contains(rec.Msg, "anyone who can reach the API reads every tenant's traces") {
		t.Errorf("log record %+v", rec)
	}
	for _, header := range []string{"", "Bearer garbage", "Basic eA=="} {
		r := httptest.NewRequest(http.MethodGet, "/api/v1/search", nil)
		if header != "" {
			r.Header.Set("Authorization", header)
		}
		s, err := a.Authenticate(r)
		if err != nil || !s.IsAll() {
			t.Errorf("Authenticate with %q: %v, %v; want all tenants", header, s, err)
		}
		var seen tenant.Scope
		a.Middleware(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
			seen, _ = tenant.FromContext(r.Context())
		})).ServeHTTP(httptest.NewRecorder(), r)
		if !seen.IsAll() {
			t.Errorf("Middleware with %q: next saw %v, want all tenants", header, seen)
		}
	}
	for _, path := range []string{"/healthz", "/"} {
		var seen tenant.Scope
		a.Middleware(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
			seen, _ = tenant.FromContext(r.Context())
		})).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, path, nil))
		if !seen.IsAll() {
			t.Errorf("Middleware on %s: next saw %v, want all tenants", path, seen)
		}
	}

	// Authenticated: no such warning, and Unauthenticated() is false.
	logs.Reset()
	a, err = New(context.Background(), Config{TokensFile: writeFile(t, "tokens", tokensFile)}, slog.New(slog.NewJSONHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if a.Unauthenticated() || strings.Contains(logs.String(), "WARN") {
		t.Errorf("with a tokens file: Unauthenticated() %v, logs %s", a.Unauthenticated(), logs.String())
	}
}

func TestAudienceWarning(t *testing.T) {
	p := newIDP(t)
	for _, tc := range []struct {
		audience string
		warn     bool
	}{{"", true}, {audience, false}} {
		var logs bytes.Buffer
		a, err := New(context.Background(), Config{OIDCIssuer: p.srv.URL, OIDCAudience: tc.audience, HTTPClient: p.srv.Client()},
			slog.New(slog.NewTextHandler(&logs, nil)))
		if err != nil {
			t.Fatal(err)
		}
		if warned := strings.Contains(logs.String(), "level=WARN") && strings.Contains(logs.String(), "OIDCAudience is not set"); warned != tc.warn {
			t.Errorf("audience %q: warned %v, want %v; logs:\n%s", tc.audience, warned, tc.warn, logs.String())
		}
		// Without an audience, a token of any audience passes.
		r := httptest.NewRequest(http.MethodGet, "/api/v1/search", nil)
		r.Header.Set("Authorization", "Bearer "+sign(t, p.rsaKey, "rsa-1", jose.RS256, map[string]any{"iss": p.srv.URL, "sub": "bob",
			"aud": "another-app", "exp": time.Now().Add(time.Hour).Unix(), "groups": []string{"team-a"}}))
		_, err = a.Authenticate(r)
		if (err == nil) != (tc.audience == "") {
			t.Errorf("audience %q: token for another-app: %v", tc.audience, err)
		}
	}
}

func TestNewErrors(t *testing.T) {
	p := newIDP(t)
	tokens := writeFile(t, "tokens", tokensFile)
	for _, tc := range []struct {
		name   string
		cfg    Config
		errHas string
	}{
		{name: "JWKS URL without issuer", cfg: Config{TokensFile: tokens, OIDCJWKSURL: "https://idp/keys"}, errHas: "OIDCJWKSURL is set but OIDCIssuer is not"},
		{name: "audience without issuer", cfg: Config{OIDCAudience: "x"}, errHas: "OIDCAudience is set"},
		{name: "tenant map without issuer", cfg: Config{TenantMapFile: "/x"}, errHas: "TenantMapFile is set"},
		{name: "admin value without issuer", cfg: Config{AdminValue: "admins"}, errHas: "AdminValue is set"},
		{name: "issuer not a URL", cfg: Config{OIDCIssuer: "idp.example"}, errHas: "not an http(s) URL"},
		{name: "missing tokens file", cfg: Config{TokensFile: filepath.Join(t.TempDir(), "none")}, errHas: "no such file"},
		{name: "missing tenant map", cfg: Config{OIDCIssuer: p.srv.URL, HTTPClient: p.srv.Client(), TenantMapFile: filepath.Join(t.TempDir(), "none")}, errHas: "no such file"},
		{name: "discovery fails", cfg: Config{OIDCIssuer: p.srv.URL + "/nowhere", HTTPClient: p.srv.Client()}, errHas: "OpenID discovery"},
		{name: "discovered issuer differs", cfg: Config{OIDCIssuer: p.srv.URL + "/", HTTPClient: p.srv.Client()}, errHas: "did not match"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(context.Background(), tc.cfg, slog.New(slog.DiscardHandler))
			if err == nil || !strings.Contains(err.Error(), tc.errHas) {
				t.Fatalf("error %v, want one saying %q", err, tc.errHas)
			}
		})
	}
}

func TestFileErrors(t *testing.T) {
	const secret = "s3cret-token-0123456789"
	for _, tc := range []struct {
		name     string
		tenants  bool // a tenant map, not a tokens file
		text     string
		errHas   string
		wantLine string // "line N"
	}{
		{name: "short token", text: "# c\nshort team-a\n", errHas: "5 bytes, fewer than the 16", wantLine: "line 2"},
		{name: "long token", text: strings.Repeat("x", MaxTokenLen+1) + " team-a\n", errHas: "more than the 8192", wantLine: "line 1"},
		{name: "no tenants", text: secret + "\n", errHas: "got 1 fields", wantLine: "line 1"},
		{name: "spaces in the list", text: "\n\n" + secret + " team-a, team-b\n", errHas: "got 3 fields", wantLine: "line 3"},
		{name: "bad tenant", text: secret + " Team_A\n", errHas: `tenant "Team_A"`, wantLine: "line 1"},
		{name: "empty tenant", text: secret + " team-a,\n", errHas: "empty tenant", wantLine: "line 1"},
		{name: "star in a list", text: secret + " team-a,*\n", errHas: "stands alone", wantLine: "line 1"},
		{name: "duplicate token", text: secret + " team-a\n" + secret + " team-b\n", errHas: "the token of line 1 again", wantLine: "line 2"},
		{name: "non-ASCII token", text: "s3cret-token-0123456789é team-a\n", errHas: "not printable ASCII", wantLine: "line 1"},
		{name: "map: no tenants", tenants: true, text: "# map\n/group\n", errHas: "want \"<claim value> <tenant>", wantLine: "line 2"},
		{name: "map: bad tenant", tenants: true, text: "g1 team-a\ng2 TEAM\n", errHas: `tenant "TEAM"`, wantLine: "line 2"},
		{name: "map: duplicate value", tenants: true, text: "g1 team-a\n\ng1 team-b\n", errHas: "the claim value of line 1 again", wantLine: "line 3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, "f", tc.text)
			var err error
			if tc.tenants {
				_, err = loadTenantMap(path)
			} else {
				_, err = loadTokens(path)
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, want := range []string{path + " " + tc.wantLine + ":", tc.errHas} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
			if !tc.tenants && strings.Contains(err.Error(), secret[:16]) {
				t.Errorf("error %q quotes the token", err)
			}
		})
	}

	t.Run("too large", func(t *testing.T) {
		path := writeFile(t, "f", strings.Repeat("# padding\n", MaxFileSize/10+1))
		if _, err := loadTokens(path); err == nil || !strings.Contains(err.Error(), "larger than") {
			t.Fatalf("error %v", err)
		}
	})

	t.Run("good files", func(t *testing.T) {
		toks, err := loadTokens(writeFile(t, "tokens", tokensFile))
		if err != nil || len(toks) != 3 {
			t.Fatalf("tokens: %d, %v", len(toks), err)
		}
		m, err := loadTenantMap(writeFile(t, "map", tenantMap))
		if err != nil || len(m) != 3 || !sameScope(m["sre"], scopeOf(t, "team-a", "team-b")) || !m["ops-admins"].IsAll() {
			t.Fatalf("tenant map: %v, %v", m, err)
		}
	})
}
