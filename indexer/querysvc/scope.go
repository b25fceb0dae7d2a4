package querysvc

import (
	"context"
	"errors"

	"github.com/meshtrace/meshtrace/indexer/query"
	"github.com/meshtrace/meshtrace/indexer/store"
	"github.com/meshtrace/meshtrace/indexer/tenant"
)

// Reader is what the read side uses of a store.Store: searches and facets.
type Reader interface {
	Search(ctx context.Context, r store.Request) (store.Result, error)
	Facet(ctx context.Context, index store.Index, filter query.Expr, field string, limit int) ([]store.FacetCount, error)
}

// ErrNoScope is the error of a read whose context carries no valid tenant scope (tenant.NewContext): the
// read side fails closed rather than guess.
var ErrNoScope = errors.New("querysvc: the request carries no tenant scope")

// scoped is the store as one read may see it: every search and every facet restricted to the read's scope.
// It is the only Reader the Service's methods use, so no route can read past its scope.
type scoped struct {
	st     store.Store
	within query.Expr // the scope's filter; nil for every tenant
}

// Search implements Reader.
func (s scoped) Search(ctx context.Context, r store.Request) (store.Result, error) {
	r.Filter = query.Conjoin(r.Filter, s.within)
	return s.st.Search(ctx, r)
}

// Facet implements Reader.
func (s scoped) Facet(ctx context.Context, index store.Index, filter query.Expr, field string, limit int) ([]store.FacetCount, error) {
	return s.st.Facet(ctx, index, query.Conjoin(filter, s.within), field, limit)
}

// reader returns the store as the read of ctx may see it, and its scope.
func (s *Service) reader(ctx context.Context) (scoped, tenant.Scope, error) {
	sc, ok := tenant.FromContext(ctx)
	if !ok || !sc.Valid() {
		return scoped{}, tenant.Scope{}, ErrNoScope
	}
	return scoped{st: s.st, within: sc.Filter()}, sc, nil
}
