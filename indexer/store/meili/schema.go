package meili

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/meilisearch/meilisearch-go"

	"github.com/meshtrace/meshtrace/indexer/query"
	"github.com/meshtrace/meshtrace/indexer/store"
)

// primaryKey is the id field of both document kinds.
const primaryKey = "id"

// schema is the settings of one index.
type schema struct {
	index    store.Index
	settings *meilisearch.Settings
}

// rankingRules put the sort parameter first, so hits come in the requested order; free text only filters
// (every phrase must match), so the relevancy rules after it merely break ties.
var rankingRules = []string{"sort", "words", "typo", "proximity", "attribute", "exactness"}

// spanSchema derives the span index settings from the query language's field table: every fixed field is
// filterable, attribute maps are filterable and sortable as a whole (which covers each nested key), scalar
// fields are sortable, and ids never match with typos.
func spanSchema(maxTotalHits int64) schema {
	return schema{index: store.Spans, settings: settingsFor(query.SpanFields,
		[]string{"attr", "resource"}, query.SpanSearchable,
		[]string{"id", "trace_id", "span_id", "parent_span_id", "links.trace_id", "links.span_id"}, maxTotalHits)}
}

// traceSchema derives the trace index settings; business keys are filterable under "keys".
func traceSchema(maxTotalHits int64) schema {
	return schema{index: store.Traces, settings: settingsFor(query.TraceFields,
		[]string{"keys"}, []string{"root_name", "root_service", "services"},
		[]string{"id", "trace_id"}, maxTotalHits)}
}

// settingsFor builds the settings of an index whose fixed fields are fields, whose attribute maps are
// mapFields, whose free-text fields are searchable and whose id fields are ids.
func settingsFor(fields map[string]query.Kind, mapFields, searchable, ids []string, maxTotalHits int64) *meilisearch.Settings {
	names := slices.Sorted(maps.Keys(fields))
	var sortable []string
	for _, f := range names {
		if fields[f] != query.KindStrings {
			sortable = append(sortable, f)
		}
	}
	filterable := append(names, mapFields...)
	return &meilisearch.Settings{
		FilterableAttributes: filterable,
		SortableAttributes:   sortable,
		SearchableAttributes: searchable,
		RankingRules:         rankingRules,
		TypoTolerance: &meilisearch.TypoTolerance{
			Enabled: true,
			// Meilisearch's documented defaults, spelled out because the client always sends this object.
			MinWordSizeForTypos: meilisearch.MinWordSizeForTypos{OneTypo: 5, TwoTypos: 9},
			DisableOnWords:      []string{},
			DisableOnAttributes: ids,
		},
		Pagination: &meilisearch.Pagination{MaxTotalHits: maxTotalHits},
	}
}

// setup creates the index uid with primary key "id" (an existing index is kept), checks its primary key,
// and applies the settings, waiting for every task.
func (s *Store) setup(ctx context.Context, uid string, settings *meilisearch.Settings) error {
	task, err := retry(ctx, s, "create index "+uid, func() (*meilisearch.TaskInfo, error) {
		return s.client.CreateIndexWithContext(ctx, &meilisearch.IndexConfig{Uid: uid, PrimaryKey: primaryKey})
	})
	if err != nil {
		return err
	}
	if err := s.wait(ctx, task.TaskUID); err != nil {
		var te *TaskError
		if !errors.As(err, &te) || te.Code != "index_already_exists" {
			return err
		}
	}
	info, err := retry(ctx, s, "get index "+uid, func() (*meilisearch.IndexResult, error) {
		return s.client.GetIndexWithContext(ctx, uid)
	})
	if err != nil {
		return err
	}
	if info.PrimaryKey != primaryKey {
		return fmt.Errorf("meili: index %s has primary key %q, want %q: delete it or choose another IndexPrefix",
			uid, info.PrimaryKey, primaryKey)
	}
	task, err = retry(ctx, s, "update settings of "+uid, func() (*meilisearch.TaskInfo, error) {
		return s.client.Index(uid).UpdateSettingsWithContext(ctx, settings)
	})
	if err != nil {
		return err
	}
	return s.wait(ctx, task.TaskUID)
}
