package meili

import (
	"context"
	"encoding/json"
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

// schema is the settings of one index: everything but the filterable attributes, which Meilisearch takes as
// granular rules that meilisearch-go's Settings cannot carry, and those rules.
type schema struct {
	index      store.Index
	settings   *meilisearch.Settings
	filterable []any // of meilisearch.AttributeRule
}

// proximityPrecision stays Meilisearch's default, byWord: byAttribute indexes about 11 % faster
// (BenchmarkIndexSettings) but makes a phrase match its words in any order within a value, which the query
// language forbids (the conformance suite's "reset connection" case catches it).

// prefixSearchDisabled is the prefixSearch setting that builds no prefix databases.
var prefixSearchDisabled = "disabled"

// rankingRules put the sort parameter first, so hits come in the requested order. Free text only filters
// (every phrase must match, and the sort always ends on the unique id), so no relevancy rule after "words"
// could change an answer: typo, proximity, attribute and exactness would only cost time.
var rankingRules = []string{"sort", "words"}

// DefaultRangeAttributes are the span attributes (under attr.) that support <, <=, > and >= by default,
// besides the fixed time, duration and count fields: the numeric OpenTelemetry attributes a responder
// compares. Every other attribute supports =, !=, IN and EXISTS, which Meilisearch indexes far more cheaply;
// Config.RangeAttributes replaces the list.
var DefaultRangeAttributes = []string{
	"http.response.status_code", "http.status_code", "rpc.grpc.status_code",
	"http.request.body.size", "http.response.body.size",
	"messaging.kafka.offset", "messaging.kafka.message.offset", "messaging.batch.message_count",
	"meshtrace.kafka.time_in_topic_ms", "meshtrace.kafka.time_in_topic_min_ms",
}

// spanSchema derives the span index settings from the query language's field table: time, duration and
// count fields (and the range attributes) are filterable with comparisons, every other fixed field and each
// attribute with equality; numeric fields and id are sortable. Facet counts the filterable string fields
// (store.FacetFields, attributes), with the faceting settings of facet.go.
func spanSchema(c Config) schema {
	ranged := make([]string, 0, len(c.RangeAttributes))
	for _, a := range c.RangeAttributes {
		ranged = append(ranged, query.AttrPrefix+a)
	}
	settings := settingsFor(query.SpanFields, query.SpanSearchable, c)
	settings.Faceting = faceting()
	return schema{index: store.Spans,
		settings:   settings,
		filterable: filterRules(query.SpanFields, ranged, []string{query.AttrPrefix + "*", query.ResourcePrefix + "*"})}
}

// traceSchema derives the trace index settings; business keys are filterable (equality) under "keys", and
// so is the service graph, edges, which Facet counts (with the faceting settings of facet.go).
func traceSchema(c Config) schema {
	settings := settingsFor(query.TraceFields, []string{"root_name", "root_service", "services"}, c)
	settings.Faceting = faceting()
	return schema{index: store.Traces,
		settings:   settings,
		filterable: filterRules(query.TraceFields, nil, []string{query.KeysPrefix + "*", "edges"})}
}

// filterRules makes two filterable-attribute rules: comparisons (and equality) for the fixed fields holding
// numbers and for ranged, equality only for the other fixed fields and the attribute patterns. Facet search
// is off: the product never searches facet values.
func filterRules(fields map[string]query.Kind, ranged, patterns []string) []any {
	var eq []string
	for _, f := range slices.Sorted(maps.Keys(fields)) {
		switch fields[f] {
		case query.KindNumber, query.KindTime, query.KindDuration:
			ranged = append(ranged, f)
		default:
			eq = append(eq, f)
		}
	}
	rule := func(patterns []string, comparison bool) meilisearch.AttributeRule {
		return meilisearch.AttributeRule{AttributePatterns: patterns, Features: meilisearch.AttributeFeatures{
			Filter: meilisearch.FilterFeatures{Equality: true, Comparison: comparison}}}
	}
	// Meilisearch applies the first rule whose pattern matches, so the ranged attributes come first.
	return []any{rule(ranged, true), rule(append(eq, patterns...), false)}
}

// settingsFor builds the settings of an index whose fixed fields are fields, whose free-text fields are
// searchable; maxTotalHits and searchCutoffMs come from c. Numeric fields and id are sortable.
func settingsFor(fields map[string]query.Kind, searchable []string, c Config) *meilisearch.Settings {
	// The query language sorts by numeric fields only; id is the tie-breaker sortParam appends. Sorted, as
	// Meilisearch lists them (settingsApplied compares).
	sortable := []string{primaryKey}
	for _, f := range slices.Sorted(maps.Keys(fields)) {
		switch fields[f] {
		case query.KindNumber, query.KindTime, query.KindDuration:
			sortable = append(sortable, f)
		}
	}
	slices.Sort(sortable)
	return &meilisearch.Settings{
		SortableAttributes:   sortable,
		SearchableAttributes: searchable,
		RankingRules:         rankingRules,
		// Free text is sent as phrases, which match whole words exactly: typo tolerance and prefix search
		// could never change an answer, and building the prefix databases costs indexing time.
		TypoTolerance: &meilisearch.TypoTolerance{
			Enabled: false,
			// Meilisearch's documented defaults, spelled out because the client always sends this object.
			MinWordSizeForTypos: meilisearch.MinWordSizeForTypos{OneTypo: 5, TwoTypos: 9},
			DisableOnWords:      []string{},
			DisableOnAttributes: []string{},
		},
		PrefixSearch:   &prefixSearchDisabled,
		Pagination:     &meilisearch.Pagination{MaxTotalHits: c.MaxTotalHits},
		SearchCutoffMs: c.SearchCutoff.Milliseconds(),
	}
}

// setup creates the index uid with primary key "id" (an existing index is kept), checks its primary key,
// and applies the settings and the filterable rules, waiting for every task.
func (s *Store) setup(ctx context.Context, uid string, sc schema) error {
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
	same, err := s.settingsApplied(ctx, uid, sc)
	if err != nil || same {
		return err
	}
	task, err = retry(ctx, s, "update settings of "+uid, func() (*meilisearch.TaskInfo, error) {
		return s.client.Index(uid).UpdateSettingsWithContext(ctx, sc.settings)
	})
	if err != nil {
		return err
	}
	if err := s.wait(ctx, task.TaskUID); err != nil {
		return err
	}
	if sc.filterable == nil {
		return nil
	}
	task, err = retry(ctx, s, "update filterable attributes of "+uid, func() (*meilisearch.TaskInfo, error) {
		return s.client.Index(uid).UpdateFilterableAttributesWithContext(ctx, &sc.filterable)
	})
	if err != nil {
		return err
	}
	return s.wait(ctx, task.TaskUID)
}

// settingsApplied reports whether the index already has every setting of sc. Meilisearch re-indexes on any
// settings update, even one that changes nothing (about 45 s per update at 1,000,000 spans), so an indexer
// restart must not send them again.
func (s *Store) settingsApplied(ctx context.Context, uid string, sc schema) (bool, error) {
	want, err := toJSONValue(sc.settings)
	if err != nil {
		return false, err
	}
	if sc.filterable != nil {
		rules, err := toJSONValue(sc.filterable)
		if err != nil {
			return false, err
		}
		want.(map[string]any)["filterableAttributes"] = rules
	}
	got, err := retry(ctx, s, "get settings of "+uid, func() (any, error) { return s.getJSON(ctx, "/indexes/"+uid+"/settings") })
	if err != nil {
		return false, err
	}
	return contains(got, want), nil
}

// toJSONValue is v as encoding/json decodes its JSON into an any.
func toJSONValue(v any) (any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var out any
	return out, json.Unmarshal(b, &out)
}

// contains reports whether got holds want: every key of a want object is in got with a value that contains
// want's; lists are equal element by element; other values are equal.
func contains(got, want any) bool {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return false
		}
		for k, wv := range w {
			if gv, ok := g[k]; !ok || !contains(gv, wv) {
				return false
			}
		}
		return true
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return false
		}
		for i := range w {
			if !contains(g[i], w[i]) {
				return false
			}
		}
		return true
	}
	return got == want
}
