package meili

import (
	"context"
	"slices"
	"testing"

	"github.com/meilisearch/meilisearch-go"

	"github.com/meshtrace/meshtrace/indexer/query"
	"github.com/meshtrace/meshtrace/indexer/store"
	"github.com/meshtrace/meshtrace/indexer/tenant"
)

// TestReopenSendsNoSettings checks on a real server that opening a store on indexes that already have its
// settings updates none (Meilisearch re-indexes on any settings update, even one changing nothing), and
// that a changed setting is applied.
func TestReopenSendsNoSettings(t *testing.T) {
	srv := sharedServer(t)
	cfg := testConfig(t, srv)
	ctx := context.Background()
	settingsTasks := func() int64 {
		t.Helper()
		res, err := adminClient(srv).GetTasksWithContext(ctx, &meilisearch.TasksQuery{Limit: 1,
			IndexUIDS: []string{cfg.IndexPrefix + "spans", cfg.IndexPrefix + "traces", cfg.IndexPrefix + fieldsIndex},
			Types:     []meilisearch.TaskType{meilisearch.TaskTypeSettingsUpdate}})
		if err != nil {
			t.Fatal(err)
		}
		return res.Total
	}
	open := func(c Config) {
		t.Helper()
		s, err := Open(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	open(cfg)
	first := settingsTasks()
	if first == 0 {
		t.Fatal("the first Open applied no settings")
	}
	open(cfg)
	if n := settingsTasks(); n != first {
		t.Errorf("reopening sent %d settings updates, want none", n-first)
	}
	changed := cfg
	changed.RangeAttributes = []string{"server.port"}
	open(changed)
	if settingsTasks() == first {
		t.Error("a changed RangeAttributes was not applied")
	}
	s, err := Open(ctx, changed)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Search(ctx, store.Request{Index: store.Spans, Filter: rangeOn("attr.server.port")}); err != nil {
		t.Errorf("range on the new range attribute: %v", err)
	}
}

// rangeOn is `NOT field > 5`, a range filter on field.
func rangeOn(field string) query.Expr {
	return &query.Not{X: &query.Compare{Field: field, Op: query.Gt, Value: query.Int(5)}}
}

// TestTenantFilterable: the tenant field, in the query language's field tables, is filterable (equality) in
// both indexes; TestTenantTokens filters on it against a real server.
func TestTenantFilterable(t *testing.T) {
	for _, sc := range []schema{spanSchema(DefaultConfig()), traceSchema(DefaultConfig())} {
		found := false
		for _, r := range sc.filterable {
			rule := r.(meilisearch.AttributeRule)
			if slices.Contains(rule.AttributePatterns, tenant.Field) {
				found = true
				if !rule.Features.Filter.Equality {
					t.Errorf("%s index: %s is not filterable with equality", sc.index, tenant.Field)
				}
			}
		}
		if !found {
			t.Errorf("%s index: %s is not filterable (rules %+v)", sc.index, tenant.Field, sc.filterable)
		}
	}
}
