// Package tenant names the tenants documents belong to and the scope of tenants a read may see.
//
// A span's tenant is decided at ingest from where the span came from (an ingest token, or the sending
// workload's verified mesh identity), never from anything the span itself says; it is the document field
// "tenant" of span and trace documents, and part of their ids, so that one tenant's spans can neither be
// overwritten by nor mixed into another's. The empty tenant is an indexer without tenancy.
//
// A read carries a Scope in its context (NewContext), set by the API's authentication; package querysvc
// refuses any read whose context has none and restricts every store request to the scope's tenants.
package tenant

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/meshtrace/meshtrace/indexer/query"
)

// Field is the document field holding the tenant, on span and trace documents.
const Field = "tenant"

// MaxLen is the longest tenant name: a Kubernetes namespace name (a DNS label).
const MaxLen = 63

// Check validates a tenant name: 1 to 63 bytes of a-z, 0-9 and '-', starting and ending with a letter or
// digit (a Kubernetes namespace name), so that it is a valid part of a document id and a filter value as is.
func Check(name string) error {
	if name == "" || len(name) > MaxLen {
		return fmt.Errorf("tenant %q: must be 1 to %d bytes", name, MaxLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' && i > 0 && i < len(name)-1) {
			return fmt.Errorf("tenant %q: byte %d (%q) is not allowed: a tenant is a-z, 0-9 and '-' inside", name, i, c)
		}
	}
	return nil
}

// Scope is the set of tenants a read may see: every tenant (All), or one or more listed ones. The zero
// Scope is not a valid scope (querysvc refuses it).
type Scope struct {
	all     bool
	tenants []string // sorted, distinct
}

// All is the scope of an administrator, or of an indexer without authentication: every document.
func All() Scope { return Scope{all: true} }

// Of returns the scope of the given tenants, at least one, each checked with Check.
func Of(tenants ...string) (Scope, error) {
	if len(tenants) == 0 {
		return Scope{}, fmt.Errorf("a tenant scope needs at least one tenant")
	}
	for _, t := range tenants {
		if err := Check(t); err != nil {
			return Scope{}, err
		}
	}
	ts := slices.Clone(tenants)
	slices.Sort(ts)
	return Scope{tenants: slices.Compact(ts)}, nil
}

// Valid reports whether s is All or names at least one tenant (the zero Scope is not valid).
func (s Scope) Valid() bool { return s.all || len(s.tenants) > 0 }

// IsAll reports whether the scope sees every tenant.
func (s Scope) IsAll() bool { return s.all }

// Tenants lists the tenants of a restricted scope, sorted (nil for All).
func (s Scope) Tenants() []string { return slices.Clone(s.tenants) }

// Allows reports whether a document of tenant t is in the scope.
func (s Scope) Allows(t string) bool {
	if s.all {
		return true
	}
	_, ok := slices.BinarySearch(s.tenants, t)
	return ok
}

// Filter is the condition restricting a search to the scope: nil for All, "tenant IN [...]" otherwise.
func (s Scope) Filter() query.Expr {
	if s.all {
		return nil
	}
	in := &query.In{Field: Field}
	for _, t := range s.tenants {
		in.Values = append(in.Values, query.Value{Str: t})
	}
	return in
}

// Only is the condition matching the documents of tenant t alone ("tenant = t"); t is a tenant name, not the
// empty tenant (whose documents have no tenant field).
func Only(t string) query.Expr {
	return &query.Compare{Field: Field, Op: query.Eq, Value: query.Value{Str: t}}
}

// String describes the scope for logs: "all tenants" or the tenants, comma-separated.
func (s Scope) String() string {
	if s.all {
		return "all tenants"
	}
	return "tenants " + strings.Join(s.tenants, ",")
}

type ctxKey struct{}

// NewContext returns ctx carrying scope s.
func NewContext(ctx context.Context, s Scope) context.Context {
	return context.WithValue(ctx, ctxKey{}, s)
}

// FromContext returns the scope ctx carries; ok is false when it carries none.
func FromContext(ctx context.Context) (s Scope, ok bool) {
	s, ok = ctx.Value(ctxKey{}).(Scope)
	return s, ok
}
