// Package auth authenticates requests to the indexer's read API (search, traces, the Jaeger routes, the web
// page) and puts the caller's tenant.Scope in the request context (tenant.NewContext), where package querysvc
// finds it; and (Ingest) decides the tenant of OTLP exports from their ingest token or the sender's verified
// mesh identity, for package receiver.
//
// A request carries "Authorization: Bearer <token>". The token is either
//
//   - a static token of Config.TokensFile (for scripts; a Kubernetes Secret mounted as a file), looked up
//     first, by its SHA-256 digest, so that the lookup takes no time that depends on how much of a token
//     matches; or
//   - a JWT of the OpenID Connect provider Config.OIDCIssuer, verified with github.com/coreos/go-oidc
//     (discovery, fetching, caching and rotation of the JWKS, signature, issuer, expiry and not-before, and
//     the audience when Config.OIDCAudience is set). Its claim Config.TenantClaim (a string or a list of
//     strings) names the caller's tenants: through Config.TenantMapFile when set, otherwise each value that is
//     a valid tenant name (tenant.Check) is that tenant; the value Config.AdminValue grants every tenant.
//
// A request without a valid token fails with ErrUnauthenticated (401 from Middleware), one with a valid token
// that maps to no tenant with ErrForbidden (403). Config.OpenPaths (health, readiness, metrics by default) pass
// Middleware without a token. With neither a tokens file nor an issuer configured the Authenticator is
// unauthenticated: every request reads every tenant (tenant.All), and New logs a warning saying so.
//
// Limits: a bearer token is at most MaxTokenLen bytes; a tokens file or tenant map at most MaxFileSize bytes.
// Both files are read once, by New: a changed file (a rotated Secret) takes effect when the indexer restarts.
package auth

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/meshtrace/meshtrace/indexer/tenant"
)

// MaxTokenLen is the longest bearer token accepted, in bytes; a longer one is refused (ErrUnauthenticated)
// without being parsed.
const MaxTokenLen = 8 << 10

// MinStaticTokenLen is the shortest static token a tokens file may hold, in bytes.
const MinStaticTokenLen = 16

// MaxFileSize is the largest tokens file or tenant map New reads, in bytes; a larger file is refused.
const MaxFileSize = 1 << 20

// DefaultTenantClaim is the claim naming the tenants of a JWT when Config.TenantClaim is empty.
const DefaultTenantClaim = "groups"

// Realm is the realm of the WWW-Authenticate challenge of a 401 answer.
const Realm = "meshtrace"

// httpTimeout bounds each request to the OpenID provider (discovery, JWKS) when Config.HTTPClient is nil.
const httpTimeout = 10 * time.Second

// DefaultOpenPaths are the paths Middleware lets through without a token when Config.OpenPaths is nil.
var DefaultOpenPaths = []string{"/healthz", "/readyz", "/metrics"}

// Errors of Authenticate, told apart with errors.Is; the error text says why, never quoting the token.
var (
	// ErrUnauthenticated is the error of a request without a token, or whose token is malformed, unknown,
	// badly signed, expired, or of the wrong issuer or audience: Middleware answers 401.
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrForbidden is the error of a request whose token is valid but maps to no tenant: Middleware answers
	// 403.
	ErrForbidden = errors.New("forbidden")
)

// Config configures an Authenticator; zero fields take the defaults of DefaultConfig. With neither
// TokensFile nor OIDCIssuer set, the Authenticator is unauthenticated (every request reads every tenant).
type Config struct {
	// TokensFile is the path of a file of static tokens, for scripts (a Kubernetes Secret mounted as a
	// file). One entry a line, "<token> <tenant>[,<tenant>...]", or "<token> *" for every tenant (an
	// administrator); blank lines and lines starting with '#' are ignored, so a token cannot start with '#'.
	// A token is MinStaticTokenLen to MaxTokenLen printable ASCII bytes without spaces; tenants are checked
	// with tenant.Check. New refuses a bad line naming the file and the line number (never the token), and a
	// file larger than MaxFileSize. Empty: no static tokens.
	TokensFile string
	// OIDCIssuer is the issuer URL of an OpenID Connect provider; setting it enables the verification of JWT
	// bearer tokens, which must carry exactly this "iss". Empty: no JWTs.
	OIDCIssuer string
	// OIDCJWKSURL is the URL of the provider's JSON Web Key Set. Empty: found by OpenID discovery from
	// OIDCIssuer + "/.well-known/openid-configuration", at New (which then fails if the provider is down).
	OIDCJWKSURL string
	// OIDCAudience is the "aud" a JWT must include. Empty: the audience is not checked (any token of the
	// issuer, whichever client it was issued to, is accepted), and New logs a warning.
	OIDCAudience string
	// TenantClaim is the JWT claim naming the caller's tenants: a string or a list of strings. Default
	// DefaultTenantClaim ("groups").
	TenantClaim string
	// TenantMapFile is the path of a file mapping claim values to tenants: one entry a line,
	// "<claim value> <tenant>[,<tenant>...]", or "<claim value> *" for every tenant; blank lines and lines
	// starting with '#' are ignored, and claim values hold no spaces. With it, only the values it lists map
	// to tenants; without it, a claim value that is a valid tenant name (tenant.Check) is that tenant. At
	// most MaxFileSize bytes.
	TenantMapFile string
	// AdminValue is a claim value granting every tenant (tenant.All), whatever the tenant map says. Empty:
	// no claim value does (though the tenant map may still map one to "*").
	AdminValue string
	// OpenPaths are the URL paths Middleware lets through without a token (and without a scope in the
	// context), matched exactly. Nil: DefaultOpenPaths; an empty non-nil slice: none.
	OpenPaths []string
	// HTTPClient makes the requests to the OpenID provider (discovery and JWKS), e.g. one trusting a
	// private CA. Nil: a client with a 10 s timeout.
	HTTPClient *http.Client
}

// DefaultConfig returns the defaults: the tenant claim DefaultTenantClaim and the open paths
// DefaultOpenPaths, no tokens file and no issuer (unauthenticated).
func DefaultConfig() Config {
	return Config{TenantClaim: DefaultTenantClaim, OpenPaths: slices.Clone(DefaultOpenPaths)}
}

// Authenticator authenticates requests (Authenticate, Middleware). Create it with New; it is safe for
// concurrent use.
type Authenticator struct {
	log      *slog.Logger
	unauth   bool
	tokens   map[[sha256.Size]byte]tenant.Scope // static tokens by SHA-256 digest
	verifier *oidc.IDTokenVerifier              // nil: no JWTs
	claim    string
	tmap     map[string]tenant.Scope // claim value -> tenants; nil: claim values are tenant names
	admin    string
	open     map[string]bool
}

// New returns the Authenticator of cfg: it reads the tokens file and the tenant map, and sets up the
// verification of JWTs (running OpenID discovery when cfg.OIDCJWKSURL is empty, with ctx for its request).
// A nil log means slog.Default().
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Authenticator, error) {
	if log == nil {
		log = slog.Default()
	}
	def := DefaultConfig()
	if cfg.TenantClaim == "" {
		cfg.TenantClaim = def.TenantClaim
	}
	if cfg.OpenPaths == nil {
		cfg.OpenPaths = def.OpenPaths
	}
	a := &Authenticator{log: log, claim: cfg.TenantClaim, admin: cfg.AdminValue, open: map[string]bool{}}
	for _, p := range cfg.OpenPaths {
		a.open[p] = true
	}
	if cfg.OIDCIssuer == "" {
		for _, f := range [][2]string{{"OIDCJWKSURL", cfg.OIDCJWKSURL}, {"OIDCAudience", cfg.OIDCAudience},
			{"TenantMapFile", cfg.TenantMapFile}, {"AdminValue", cfg.AdminValue}} {
			if f[1] != "" {
				return nil, fmt.Errorf("auth: %s is set but OIDCIssuer is not: it only applies to JWTs of an OpenID provider", f[0])
			}
		}
	}
	if cfg.TokensFile == "" && cfg.OIDCIssuer == "" {
		a.unauth = true
		log.Warn("read API authentication is OFF (no tokens file, no OpenID issuer): anyone who can reach the API reads every tenant's traces")
		return a, nil
	}
	if cfg.TokensFile != "" {
		toks, err := loadTokens(cfg.TokensFile)
		if err != nil {
			return nil, err
		}
		a.tokens = toks
	}
	if cfg.OIDCIssuer != "" {
		if err := a.setupOIDC(ctx, cfg); err != nil {
			return nil, err
		}
	}
	log.Info("read API authentication on", "static_tokens", len(a.tokens), "oidc_issuer", cfg.OIDCIssuer,
		"oidc_audience", cfg.OIDCAudience, "tenant_claim", a.claim, "tenant_map_entries", len(a.tmap),
		"admin_value_set", a.admin != "")
	return a, nil
}

// setupOIDC loads the tenant map and creates the JWT verifier of cfg.
func (a *Authenticator) setupOIDC(ctx context.Context, cfg Config) error {
	u, err := url.Parse(cfg.OIDCIssuer)
	if err != nil || u.Host == "" || u.Scheme != "https" && u.Scheme != "http" {
		return fmt.Errorf("auth: OIDCIssuer %q is not an http(s) URL", cfg.OIDCIssuer)
	}
	if u.Scheme != "https" {
		a.log.Warn("the OpenID issuer is not https: its keys can be forged on the way", "issuer", cfg.OIDCIssuer)
	}
	if cfg.TenantMapFile != "" {
		m, err := loadTenantMap(cfg.TenantMapFile)
		if err != nil {
			return err
		}
		a.tmap = m
	}
	client := cfg.HTTPClient
	if client == nil {
		client = &http.Client{Timeout: httpTimeout}
	}
	ctx = oidc.ClientContext(ctx, client)
	vc := &oidc.Config{ClientID: cfg.OIDCAudience, SkipClientIDCheck: cfg.OIDCAudience == ""}
	if cfg.OIDCAudience == "" {
		a.log.Warn("OIDCAudience is not set: JWTs of the issuer are accepted whatever their audience, including tokens issued to other applications",
			"issuer", cfg.OIDCIssuer)
	}
	if cfg.OIDCJWKSURL != "" {
		// Without discovery, go-oidc would accept RS256 only: accept every asymmetric algorithm it supports
		// (the key of the JWKS still has to verify the signature, and go-jose checks that its type fits).
		vc.SupportedSigningAlgs = []string{oidc.RS256, oidc.RS384, oidc.RS512, oidc.ES256, oidc.ES384, oidc.ES512,
			oidc.PS256, oidc.PS384, oidc.PS512, oidc.EdDSA}
		a.verifier = oidc.NewVerifier(cfg.OIDCIssuer, oidc.NewRemoteKeySet(ctx, cfg.OIDCJWKSURL), vc)
		return nil
	}
	p, err := oidc.NewProvider(ctx, cfg.OIDCIssuer)
	if err != nil {
		return fmt.Errorf("auth: OpenID discovery of %s: %w", cfg.OIDCIssuer, err)
	}
	a.verifier = p.VerifierContext(ctx, vc)
	return nil
}

// Unauthenticated reports whether a is in unauthenticated mode: neither a tokens file nor an issuer is
// configured, and every request gets tenant.All().
func (a *Authenticator) Unauthenticated() bool { return a.unauth }

// Authenticate returns the scope of the caller of r, from its "Authorization: Bearer <token>" header: the
// scope of a static token, or the tenants a JWT's tenant claim maps to. The error wraps ErrUnauthenticated
// or ErrForbidden. In unauthenticated mode it returns tenant.All() whatever r carries.
func (a *Authenticator) Authenticate(r *http.Request) (tenant.Scope, error) {
	if a.unauth {
		return tenant.All(), nil
	}
	raw, err := bearer(r.Header.Values("Authorization"))
	if err != nil {
		return tenant.Scope{}, err
	}
	if s, ok := a.tokens[sha256.Sum256([]byte(raw))]; ok {
		return s, nil
	}
	if a.verifier == nil {
		return tenant.Scope{}, fmt.Errorf("%w: the bearer token is not a known token", ErrUnauthenticated)
	}
	if strings.Count(raw, ".") != 2 {
		return tenant.Scope{}, fmt.Errorf("%w: the bearer token is neither a known static token nor a JWT", ErrUnauthenticated)
	}
	return a.jwtScope(r.Context(), raw)
}

// bearer returns the token of the Authorization header values vals, which must be one "Bearer <token>"
// (the scheme in any case).
func bearer(vals []string) (string, error) {
	switch {
	case len(vals) == 0:
		return "", fmt.Errorf("%w: no Authorization header: send \"Authorization: Bearer <token>\"", ErrUnauthenticated)
	case len(vals) > 1:
		return "", fmt.Errorf("%w: more than one Authorization header", ErrUnauthenticated)
	}
	scheme, tok, ok := strings.Cut(vals[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		// Not quoting the scheme: a header without a space is all token.
		return "", fmt.Errorf("%w: the Authorization header is not \"Bearer <token>\"", ErrUnauthenticated)
	}
	tok = strings.TrimLeft(tok, " ")
	switch {
	case tok == "":
		return "", fmt.Errorf("%w: the bearer token is empty", ErrUnauthenticated)
	case len(tok) > MaxTokenLen:
		return "", fmt.Errorf("%w: the bearer token is %d bytes, more than the %d accepted", ErrUnauthenticated, len(tok), MaxTokenLen)
	case !printable(tok):
		return "", fmt.Errorf("%w: the bearer token holds a space or a byte that is not printable ASCII", ErrUnauthenticated)
	}
	return tok, nil
}

// printable reports whether s is made of printable ASCII bytes other than space.
func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

// jwtScope verifies the JWT raw and returns the scope its tenant claim maps to.
func (a *Authenticator) jwtScope(ctx context.Context, raw string) (tenant.Scope, error) {
	tok, err := a.verifier.Verify(ctx, raw)
	if err != nil {
		var exp *oidc.TokenExpiredError
		if errors.As(err, &exp) {
			return tenant.Scope{}, fmt.Errorf("%w: the token expired at %s", ErrUnauthenticated, exp.Expiry.UTC().Format(time.RFC3339))
		}
		// go-oidc says why (malformed, bad signature, unknown key, issuer or audience expected and got),
		// quoting claims but not the token.
		return tenant.Scope{}, fmt.Errorf("%w: invalid token: %v", ErrUnauthenticated, err)
	}
	var claims map[string]json.RawMessage
	if err := tok.Claims(&claims); err != nil {
		return tenant.Scope{}, fmt.Errorf("%w: the token's claims: %v", ErrUnauthenticated, err)
	}
	c, ok := claims[a.claim]
	if !ok {
		return tenant.Scope{}, fmt.Errorf("%w: the token of subject %q has no %q claim naming its tenants", ErrForbidden, tok.Subject, a.claim)
	}
	var values []string
	if err := json.Unmarshal(c, &values); err != nil {
		var one string
		if err := json.Unmarshal(c, &one); err != nil {
			return tenant.Scope{}, fmt.Errorf("%w: the %q claim of the token of subject %q is neither a string nor a list of strings", ErrForbidden, a.claim, tok.Subject)
		}
		values = []string{one}
	}
	s, ok := a.mapValues(values)
	if !ok {
		a.log.Info("read API: a valid token maps to no tenant", "subject", tok.Subject, "claim", a.claim,
			"values", values[:min(len(values), 20)], "n_values", len(values))
		return tenant.Scope{}, fmt.Errorf("%w: none of the %d values of the %q claim of the token of subject %q maps to a tenant",
			ErrForbidden, len(values), a.claim, tok.Subject)
	}
	return s, nil
}

// mapValues returns the union of the scopes the claim values map to; ok is false when none maps to any.
func (a *Authenticator) mapValues(values []string) (s tenant.Scope, ok bool) {
	var ts []string
	for _, v := range values {
		if a.admin != "" && v == a.admin {
			return tenant.All(), true
		}
		if a.tmap == nil {
			if tenant.Check(v) == nil {
				ts = append(ts, v)
			}
			continue
		}
		m, found := a.tmap[v]
		switch {
		case !found:
		case m.IsAll():
			return tenant.All(), true
		default:
			ts = append(ts, m.Tenants()...)
		}
	}
	s, err := tenant.Of(ts...)
	return s, err == nil
}

// Middleware authenticates each request to next: on success next runs with the caller's scope in the
// request context (tenant.NewContext); on failure the answer is 401 with the challenge
// `WWW-Authenticate: Bearer realm="meshtrace"` (ErrUnauthenticated) or 403 (ErrForbidden), with the JSON
// body {"error":"..."} of the /api/v1 routes. Requests to the open paths go to next without a token and
// without a scope, except in unauthenticated mode, where every request gets tenant.All().
func (a *Authenticator) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !a.unauth && a.open[r.URL.Path] {
			next.ServeHTTP(w, r)
			return
		}
		s, err := a.Authenticate(r)
		if err != nil {
			a.refuse(w, r, err)
			return
		}
		next.ServeHTTP(w, r.WithContext(tenant.NewContext(r.Context(), s)))
	})
}

// errorBody is the JSON error body of the /api/v1 routes (api.ErrorResponse).
type errorBody struct {
	Error string `json:"error"`
}

// refuse answers a request Authenticate refused with err.
func (a *Authenticator) refuse(w http.ResponseWriter, r *http.Request, err error) {
	code := http.StatusUnauthorized
	if errors.Is(err, ErrForbidden) {
		code = http.StatusForbidden
	} else {
		w.Header().Set("WWW-Authenticate", `Bearer realm="`+Realm+`"`)
		a.log.Debug("read API: request refused", "path", r.URL.Path, "remote", r.RemoteAddr, "err", err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(errorBody{Error: err.Error()}) // the client may be gone
}
