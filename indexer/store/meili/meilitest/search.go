package meilitest

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/meshtrace/meshtrace/indexer/store/meili/meilifilter"
)

// searchKeys are the search parameters of Meilisearch's documentation. The stand-in implements q, offset,
// limit, page, hitsPerPage, filter, sort, distinct, attributesToRetrieve, attributesToSearchOn and
// matchingStrategy; the others are rejected unless null or false.
var searchKeys = []string{
	"q", "offset", "limit", "hitsPerPage", "page", "filter", "facets", "distinct", "attributesToRetrieve",
	"attributesToCrop", "cropLength", "cropMarker", "attributesToHighlight", "highlightPreTag",
	"highlightPostTag", "showMatchesPosition", "sort", "matchingStrategy", "showRankingScore",
	"showRankingScoreDetails", "rankingScoreThreshold", "attributesToSearchOn", "hybrid", "vector",
	"retrieveVectors", "locales", "media", "showPerformanceDetails",
}

var implementedSearchKeys = []string{
	"q", "offset", "limit", "hitsPerPage", "page", "filter", "distinct", "attributesToRetrieve", "sort",
	"matchingStrategy", "attributesToSearchOn",
}

// searchParams are the implemented search parameters, decoded.
type searchParams struct {
	q                        string
	offset, limit            int
	page, hitsPerPage        *int
	sort, retrieve, searchOn []string
	distinct, strategy       string
	filter                   meilifilter.Node
	paged                    bool
}

func (s *Server) search(w http.ResponseWriter, r *http.Request, uid string) error {
	began := time.Now()
	obj, err := decodeObject(r, searchKeys)
	if err != nil {
		return err
	}
	for k, v := range obj {
		if !slices.Contains(implementedSearchKeys, k) && string(v) != "false" {
			return errorf(http.StatusNotImplemented, "not_implemented", "meilitest: search parameter `%s` is not implemented", k)
		}
	}
	p := searchParams{limit: 20, strategy: "last"}
	for _, f := range []struct {
		key  string
		dst  any
		code string
	}{
		{"q", &p.q, "invalid_search_q"}, {"offset", &p.offset, "invalid_search_offset"},
		{"limit", &p.limit, "invalid_search_limit"}, {"page", &p.page, "invalid_search_page"},
		{"hitsPerPage", &p.hitsPerPage, "invalid_search_hits_per_page"}, {"sort", &p.sort, "invalid_search_sort"},
		{"distinct", &p.distinct, "invalid_search_distinct"},
		{"attributesToRetrieve", &p.retrieve, "invalid_search_attributes_to_retrieve"},
		{"attributesToSearchOn", &p.searchOn, "invalid_search_attributes_to_search_on"},
		{"matchingStrategy", &p.strategy, "invalid_search_matching_strategy"},
	} {
		if err := field(obj, f.key, f.dst, f.code); err != nil {
			return err
		}
	}
	if p.offset < 0 || p.limit < 0 {
		return errorf(http.StatusBadRequest, "invalid_search_limit", "Invalid value: offset and limit must be positive integers")
	}
	if p.strategy != "last" && p.strategy != "all" && p.strategy != "frequency" {
		return errorf(http.StatusBadRequest, "invalid_search_matching_strategy",
			"Unknown value `%s` at `.matchingStrategy`: expected one of `last`, `all`, `frequency`", p.strategy)
	}
	p.paged = p.page != nil || p.hitsPerPage != nil
	if p.filter, err = filterParam(obj["filter"], "invalid_search_filter"); err != nil {
		return err
	}
	terms, err := parseQ(p.q)
	if err != nil {
		return err
	}
	if len(terms) > 1 && p.strategy != "all" {
		return errorf(http.StatusNotImplemented, "not_implemented",
			"meilitest: matchingStrategy `%s` with several terms is not implemented (use `all`)", p.strategy)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	ix, err := s.index(uid)
	if err != nil {
		return err
	}
	if err := checkFilter(p.filter, ix, "invalid_search_filter"); err != nil {
		return err
	}
	order, err := sortOrder(ix, p.sort, "invalid_search_sort")
	if err != nil {
		return err
	}
	if len(p.sort) > 0 && !slices.Contains(ix.settings.rankingRules, "sort") {
		return errorf(http.StatusBadRequest, "invalid_search_sort",
			"You must specify where `sort` is listed in the rankingRules setting to use the sort parameter at search time.")
	}
	if p.distinct != "" && !meilifilter.Covered(p.distinct, ix.settings.filterable) {
		return errorf(http.StatusBadRequest, "invalid_search_distinct",
			"Attribute `%s` is not filterable and thus, cannot be used as distinct attribute.", p.distinct)
	}
	searchable := ix.settings.searchable
	if p.searchOn != nil {
		for _, a := range p.searchOn {
			if !meilifilter.Covered(a, searchable) {
				return errorf(http.StatusBadRequest, "invalid_search_attributes_to_search_on",
					"Attribute `%s` is not searchable. Available searchable attributes are: `%s`.", a, strings.Join(searchable, ", "))
			}
		}
		searchable = p.searchOn
	}

	var hits []*doc
	for _, d := range ix.ordered() {
		if meilifilter.Match(p.filter, d.flat) && matchesText(d.flat, terms, searchable) {
			hits = append(hits, d)
		}
	}
	order(hits)
	if p.distinct != "" {
		hits = distinct(hits, p.distinct)
	}
	if len(hits) > ix.settings.maxTotalHits {
		hits = hits[:ix.settings.maxTotalHits]
	}
	total := len(hits)
	resp := map[string]any{"query": p.q}
	if p.paged {
		page, per := 1, 20
		if p.page != nil {
			page = *p.page
		}
		if p.hitsPerPage != nil {
			per = *p.hitsPerPage
		}
		if page < 1 {
			return errorf(http.StatusBadRequest, "invalid_search_page", "Invalid value at `.page`: a value greater than 0 is required")
		}
		totalPages := 0
		if per > 0 {
			totalPages = (total + per - 1) / per
		}
		hits = window(hits, (page-1)*per, per)
		resp["page"], resp["hitsPerPage"], resp["totalHits"], resp["totalPages"] = page, per, total, totalPages
	} else {
		hits = window(hits, p.offset, p.limit)
		resp["offset"], resp["limit"], resp["estimatedTotalHits"] = p.offset, p.limit, total
	}
	out := make([]map[string]any, len(hits))
	for i, d := range hits {
		out[i] = project(d.obj, p.retrieve)
	}
	resp["hits"] = out
	resp["processingTimeMs"] = time.Since(began).Milliseconds()
	writeJSON(w, http.StatusOK, resp)
	return nil
}

// distinct keeps the first document per value of the attribute (documents without it are all kept).
func distinct(hits []*doc, attr string) []*doc {
	seen := map[string]bool{}
	out := hits[:0:0]
	for _, d := range hits {
		f := d.flat[attr]
		if f == nil || len(f.Values) == 0 {
			out = append(out, d)
			continue
		}
		key := strings.ToLower(strings.TrimSpace(scalarString(f.Values[0])))
		if !seen[key] {
			seen[key] = true
			out = append(out, d)
		}
	}
	return out
}

func scalarString(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 64)
	case bool:
		return strconv.FormatBool(v)
	}
	return ""
}

// sortOrder validates sort criteria ("attribute:asc" or "attribute:desc", on sortable attributes) and returns
// a stable sorter. Numbers sort before strings; documents without the attribute come last either way.
func sortOrder(ix *index, criteria []string, code string) (func([]*doc), error) {
	type criterion struct {
		attr string
		desc bool
	}
	var cs []criterion
	for _, c := range criteria {
		i := strings.LastIndexByte(c, ':')
		if i <= 0 || (c[i+1:] != "asc" && c[i+1:] != "desc") {
			return nil, errorf(http.StatusBadRequest, code,
				"Invalid value at `.sort`: Invalid syntax for the sort parameter: expected expression ending by `:asc` or `:desc`, found `%s`.", c)
		}
		attr := c[:i]
		if !meilifilter.Covered(attr, ix.settings.sortable) {
			return nil, errorf(http.StatusBadRequest, code,
				"Attribute `%s` is not sortable. Available sortable attributes are: `%s`.", attr, strings.Join(ix.settings.sortable, ", "))
		}
		cs = append(cs, criterion{attr, c[i+1:] == "desc"})
	}
	return func(docs []*doc) {
		slices.SortStableFunc(docs, func(a, b *doc) int {
			for _, c := range cs {
				if r := compareKeys(sortKey(a.flat[c.attr], c.desc), sortKey(b.flat[c.attr], c.desc), c.desc); r != 0 {
					return r
				}
			}
			return 0
		})
	}, nil
}

type sortValue struct {
	class int // 0 number, 1 string, 2 missing
	num   float64
	str   string
}

// sortKey is the value a document sorts by: its smallest value ascending, its largest descending.
func sortKey(f *meilifilter.Field, desc bool) sortValue {
	k := sortValue{class: 2}
	if f == nil {
		return k
	}
	for _, v := range f.Values {
		var c sortValue
		switch v := v.(type) {
		case float64:
			c = sortValue{class: 0, num: v}
		case string:
			c = sortValue{class: 1, str: strings.ToLower(v)}
		case bool:
			c = sortValue{class: 1, str: strconv.FormatBool(v)}
		}
		if k.class == 2 || c.class < k.class || (c.class == k.class && (compareKeys(c, k, false) < 0) != desc) {
			k = c
		}
	}
	return k
}

// compareKeys orders keys by class, then by value (reversed when desc).
func compareKeys(a, b sortValue, desc bool) int {
	if a.class != b.class {
		return a.class - b.class
	}
	r := 0
	switch {
	case a.class == 0 && a.num < b.num, a.class == 1 && a.str < b.str:
		r = -1
	case a.class == 0 && a.num > b.num, a.class == 1 && a.str > b.str:
		r = 1
	}
	if desc {
		r = -r
	}
	return r
}

// parseQ splits q into terms: "quoted phrases" and single words, each a list of normalized words.
func parseQ(q string) ([][]string, error) {
	var terms [][]string
	for i := 0; ; i++ {
		part, rest, found := strings.Cut(q, `"`)
		if i%2 == 1 {
			if w := words(part); len(w) > 0 {
				terms = append(terms, w)
			}
		} else {
			for _, w := range words(part) {
				terms = append(terms, []string{w})
			}
		}
		if !found {
			return terms, nil
		}
		q = rest
	}
}

// words splits text into lower-cased words: maximal runs of letters and digits.
func words(s string) []string {
	return strings.FieldsFunc(strings.ToLower(s), func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsNumber(r) })
}

// matchesText reports whether every term occurs, as consecutive whole words, in one value of a searchable
// attribute.
func matchesText(d meilifilter.Doc, terms [][]string, searchable []string) bool {
	if len(terms) == 0 {
		return true
	}
	var values [][]string
	for path, f := range d {
		if !meilifilter.Covered(path, searchable) {
			continue
		}
		for _, v := range f.Values {
			values = append(values, words(scalarString(v)))
		}
	}
	for _, t := range terms {
		if !anyContains(values, t) {
			return false
		}
	}
	return true
}

func anyContains(values [][]string, phrase []string) bool {
	for _, v := range values {
		for i := 0; i+len(phrase) <= len(v); i++ {
			match := true
			for j, w := range phrase {
				if v[i+j] != w {
					match = false
					break
				}
			}
			if match {
				return true
			}
		}
	}
	return false
}
