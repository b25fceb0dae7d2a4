package auth

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"

	"github.com/meshtrace/meshtrace/indexer/tenant"
)

// XFCCHeader is the header in which the indexer's own mesh sidecar names the client certificate of the
// workload that sent a request (Envoy's x-forwarded-client-cert).
const XFCCHeader = "x-forwarded-client-cert"

// IngestConfig configures an Ingest. With neither field set there is no ingest tenancy (NewIngest returns
// nil): every span is of the empty tenant.
type IngestConfig struct {
	// TokensFile holds the ingest tokens, one per line: "<token> <tenant>", one tenant per token (a
	// Kubernetes Secret mounted as a file; the filter sends its token from its policy). Same rules as
	// Config.TokensFile otherwise.
	TokensFile string
	// TrustXFCC takes the tenant of a request without a token from the x-forwarded-client-cert header: the
	// namespace of the sender's SPIFFE id (URI=spiffe://<trust domain>/ns/<namespace>/sa/<account>) in its
	// last element. Only safe when the indexer's ports are reached through its own Istio sidecar with mTLS
	// STRICT: the sidecar appends the identity it verified as the last element (Istio's inbound default,
	// APPEND_FORWARD; SANITIZE_SET replaces the header instead), so whatever a client sent comes before it
	// and is never read. FORWARD_ONLY or ALWAYS_FORWARD_ONLY on the indexer's proxy would make it unsafe.
	TrustXFCC bool
}

// Ingest decides the tenant of an OTLP export from its headers (receiver.Tenancy): the tenant of its ingest
// token, or else, when trusted, the namespace of the sender's verified mesh identity. Create it with NewIngest.
type Ingest struct {
	tokens map[[sha256.Size]byte]string
	xfcc   bool
}

// NewIngest reads cfg's tokens file; it returns nil (no tenancy) when cfg configures nothing.
func NewIngest(cfg IngestConfig) (*Ingest, error) {
	if cfg.TokensFile == "" && !cfg.TrustXFCC {
		return nil, nil
	}
	in := &Ingest{xfcc: cfg.TrustXFCC}
	if cfg.TokensFile != "" {
		es, err := readEntries(cfg.TokensFile, "ingest tokens file", "token", true)
		if err != nil {
			return nil, err
		}
		in.tokens = make(map[[sha256.Size]byte]string, len(es))
		for _, e := range es {
			ts := e.scope.Tenants()
			if len(ts) != 1 {
				return nil, fmt.Errorf("auth: ingest tokens file %s: a token sends for exactly one tenant, not %s", cfg.TokensFile, e.scope)
			}
			in.tokens[sha256.Sum256([]byte(e.key))] = ts[0]
		}
	}
	return in, nil
}

// Tenant implements receiver.Tenancy. The error wraps ErrUnauthenticated and never quotes a token.
func (in *Ingest) Tenant(header func(string) string) (string, error) {
	if h := header("Authorization"); h != "" && in.tokens != nil {
		raw, err := bearer([]string{h})
		if err != nil {
			return "", err
		}
		if t, ok := in.tokens[sha256.Sum256([]byte(raw))]; ok {
			return t, nil
		}
		return "", fmt.Errorf("%w: the bearer token is not a known ingest token", ErrUnauthenticated)
	}
	if in.xfcc {
		t, err := xfccNamespace(header(XFCCHeader))
		if err != nil {
			return "", fmt.Errorf("%w: %v", ErrUnauthenticated, err)
		}
		return t, nil
	}
	return "", fmt.Errorf("%w: no ingest token: send \"Authorization: Bearer <token>\"", ErrUnauthenticated)
}

// xfccNamespace returns the namespace of the SPIFFE id in the URI field of the last element of an
// x-forwarded-client-cert value (the one the nearest proxy set), as a tenant.
func xfccNamespace(v string) (string, error) {
	if v == "" {
		return "", errors.New("no ingest token and no verified mesh identity (x-forwarded-client-cert): send through the mesh with mTLS, or with a token")
	}
	elems := strings.Split(v, ",")
	var uri string
	for _, kv := range strings.Split(elems[len(elems)-1], ";") {
		if k, val, ok := strings.Cut(strings.TrimSpace(kv), "="); ok && strings.EqualFold(k, "URI") {
			uri = strings.Trim(val, `"`)
		}
	}
	rest, ok := strings.CutPrefix(uri, "spiffe://")
	parts := strings.Split(rest, "/")
	if !ok || len(parts) != 5 || parts[1] != "ns" || parts[3] != "sa" {
		return "", errors.New("the sender's certificate has no SPIFFE id of the form spiffe://<domain>/ns/<namespace>/sa/<account>")
	}
	if err := tenant.Check(parts[2]); err != nil {
		return "", fmt.Errorf("the sender's namespace is not a tenant name: %v", err)
	}
	return parts[2], nil
}
