package meilitest

import (
	"cmp"
	"encoding/json"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"time"

	"github.com/meshtrace/meshtrace/indexer/store/meili/meilifilter"
)

// index is one Meilisearch index: its documents and settings.
type index struct {
	uid        string
	primaryKey string
	createdAt  time.Time
	updatedAt  time.Time
	settings   settings
	docs       map[string]*doc
	seq        int64
}

// doc is a stored document: the object as sent, its flattened form for filters, and its insertion rank.
type doc struct {
	seq  int64
	obj  map[string]any
	flat meilifilter.Doc
}

// settings holds the index settings the stand-in interprets, plus every setting as last written (raw).
type settings struct {
	filterable   []string
	sortable     []string
	searchable   []string
	rankingRules []string
	maxTotalHits int
	raw          map[string]json.RawMessage
}

var defaultRankingRules = []string{"words", "typo", "proximity", "attribute", "sort", "exactness"}

func newIndex(uid, pk string, now time.Time) *index {
	return &index{
		uid: uid, primaryKey: pk, createdAt: now, updatedAt: now, docs: make(map[string]*doc),
		settings: settings{
			filterable: []string{}, sortable: []string{}, searchable: []string{"*"},
			rankingRules: defaultRankingRules, maxTotalHits: 1000, raw: map[string]json.RawMessage{},
		},
	}
}

// ordered returns the documents in insertion order.
func (ix *index) ordered() []*doc {
	return slices.SortedFunc(maps.Values(ix.docs), func(a, b *doc) int { return cmp.Compare(a.seq, b.seq) })
}

// settingKeys are the top-level keys of the settings object in Meilisearch's documentation.
var settingKeys = []string{
	"displayedAttributes", "searchableAttributes", "filterableAttributes", "sortableAttributes", "rankingRules",
	"stopWords", "nonSeparatorTokens", "separatorTokens", "dictionary", "synonyms", "distinctAttribute",
	"proximityPrecision", "typoTolerance", "faceting", "pagination", "embedders", "searchCutoffMs",
	"localizedAttributes", "facetSearch", "prefixSearch",
}

type typoTolerance struct {
	Enabled             *bool `json:"enabled"`
	MinWordSizeForTypos *struct {
		OneTypo  *int `json:"oneTypo"`
		TwoTypos *int `json:"twoTypos"`
	} `json:"minWordSizeForTypos"`
	DisableOnWords      []string `json:"disableOnWords"`
	DisableOnAttributes []string `json:"disableOnAttributes"`
	DisableOnNumbers    *bool    `json:"disableOnNumbers"`
}

var rankingRuleRe = regexp.MustCompile(`^(words|typo|proximity|attribute|sort|exactness|[^:\s]+:(asc|desc))$`)

func (s *Server) updateSettings(w http.ResponseWriter, r *http.Request, uid string) error {
	obj, err := decodeObject(r, settingKeys)
	if err != nil {
		return err
	}
	var next struct {
		filterable, sortable, searchable, displayed, rules []string
		typo                                               typoTolerance
		pagination                                         struct {
			MaxTotalHits *int `json:"maxTotalHits"`
		}
	}
	for _, f := range []struct {
		key  string
		dst  any
		code string
	}{
		{"filterableAttributes", &next.filterable, "invalid_settings_filterable_attributes"},
		{"sortableAttributes", &next.sortable, "invalid_settings_sortable_attributes"},
		{"searchableAttributes", &next.searchable, "invalid_settings_searchable_attributes"},
		{"displayedAttributes", &next.displayed, "invalid_settings_displayed_attributes"},
		{"rankingRules", &next.rules, "invalid_settings_ranking_rules"},
		{"typoTolerance", &next.typo, "invalid_settings_typo_tolerance"},
		{"pagination", &next.pagination, "invalid_settings_pagination"},
	} {
		if err := field(obj, f.key, f.dst, f.code); err != nil {
			return err
		}
	}
	for _, rule := range next.rules {
		if !rankingRuleRe.MatchString(rule) {
			return errorf(http.StatusBadRequest, "invalid_settings_ranking_rules",
				"Invalid value at `.rankingRules`: `%s` ranking rule is invalid.", rule)
		}
	}
	if m := next.typo.MinWordSizeForTypos; m != nil && m.OneTypo != nil && m.TwoTypos != nil && *m.OneTypo > *m.TwoTypos {
		return errorf(http.StatusBadRequest, "invalid_settings_typo_tolerance",
			"`minWordSizeForTypos` setting is invalid. `oneTypo` and `twoTypos` fields should be between `0` and `255`, and `twoTypos` should be greater or equals to `oneTypo` but found `oneTypo: %d` and twoTypos: %d`.",
			*m.OneTypo, *m.TwoTypos)
	}
	if p := next.pagination.MaxTotalHits; p != nil && *p < 1 {
		return errorf(http.StatusBadRequest, "invalid_settings_pagination",
			"Invalid value at `.pagination.maxTotalHits`: a value greater than 0 is required")
	}
	details := map[string]any{}
	for k, v := range obj {
		details[k] = v
	}
	return s.enqueue(w, uid, "settingsUpdate", details, func(t *task) *apiError {
		ix := s.indexes[uid]
		if ix == nil {
			ix = newIndex(uid, "", t.EnqueuedAt)
			s.indexes[uid] = ix
		}
		st := &ix.settings
		if _, ok := obj["filterableAttributes"]; ok {
			st.filterable = next.filterable
		}
		if _, ok := obj["sortableAttributes"]; ok {
			st.sortable = next.sortable
		}
		if _, ok := obj["searchableAttributes"]; ok {
			st.searchable = next.searchable
		}
		if _, ok := obj["rankingRules"]; ok {
			st.rankingRules = next.rules
		}
		if next.pagination.MaxTotalHits != nil {
			st.maxTotalHits = *next.pagination.MaxTotalHits
		}
		for k, v := range obj {
			st.raw[k] = v
		}
		ix.updatedAt = time.Now().UTC()
		return nil
	})
}

func (s *Server) getSettings(w http.ResponseWriter, uid string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ix, err := s.index(uid)
	if err != nil {
		return err
	}
	out := map[string]any{}
	for k, v := range ix.settings.raw {
		out[k] = v
	}
	out["filterableAttributes"] = ix.settings.filterable
	out["sortableAttributes"] = ix.settings.sortable
	out["searchableAttributes"] = ix.settings.searchable
	out["rankingRules"] = ix.settings.rankingRules
	out["pagination"] = map[string]int{"maxTotalHits": ix.settings.maxTotalHits}
	writeJSON(w, http.StatusOK, out)
	return nil
}
