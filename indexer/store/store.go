// Package store defines the storage interface the indexer writes documents to and searches in. The
// implementations live in sub-packages: meili (Meilisearch through meilisearch-go) and embedded (on-disk,
// in-process, the default). TraceSpans reads every span of a trace back from any Store. Compiled queries
// (package query) are run by package querysvc, which joins span and trace scope the same way for every
// backend and is the read APIs' only way to a Store; storetest is the conformance suite every Store passes.
package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/meshtrace/meshtrace/indexer/document"
	"github.com/meshtrace/meshtrace/indexer/query"
)

// Store is a search backend for span and trace documents. Implementations are safe for concurrent use.
type Store interface {
	// Write upserts span documents and trace documents (a trace document replaces the one with the same id).
	// It returns only when the documents are durably accepted, or with an error (nothing partially lost:
	// callers retry the whole batch on error). Once Write returns, Search sees the documents.
	Write(ctx context.Context, spans []document.Span, traces []document.Trace) error
	// GetTraces fetches trace documents by id (missing ids are omitted); the rollup uses it to merge late spans.
	GetTraces(ctx context.Context, ids []string) ([]document.Trace, error)
	// Search runs one request over one index (spans or traces).
	Search(ctx context.Context, r Request) (Result, error)
	// DeleteBefore removes span and trace documents that started before t (retention), only those matching
	// filter when it is not nil (one tenant's, for a tenant's own retention). The filter names fields of both
	// indexes (tenant, trace_id, start): Meilisearch refuses a field an index cannot filter.
	DeleteBefore(ctx context.Context, t time.Time, filter query.Expr) error
	// Fields returns the names of the fields the span index has created so far, in no particular order:
	// dotted document paths such as "name", "attr.http.method" or "events.attr.exception.type" (internal
	// fields of the engine are left out). Meilisearch keeps every field name forever and fails past 65,535
	// of them, and the embedded store keeps each in memory per segment holding it, so the indexer primes its
	// cap on attribute keys (package fieldcap) with this list at startup. Names of deleted documents may still
	// be listed.
	Fields(ctx context.Context) ([]string, error)
	// Facet counts the values of field over the documents of index matching filter (nil matches all): one
	// FacetCount per distinct value, a document counting once per value it holds (a list field counts each
	// distinct element), over every matching document (not only the first MaxLimit), most frequent first,
	// ties by value ascending, at most limit of them (0: DefaultFacetLimit; at most MaxFacetValues). A number
	// counts under its decimal form together with the strings spelled the same (see FacetPrefixes); a store
	// may count strings differing only in case as one value (Meilisearch does). Only the fields CheckFacet
	// accepts can be counted (FacetFields, and attribute fields under FacetPrefixes); any other, or a bad
	// limit, is an error wrapping ErrBadRequest.
	Facet(ctx context.Context, index Index, filter query.Expr, field string, limit int) ([]FacetCount, error)
	// Close flushes and releases the store.
	Close() error
}

// Index names the document kind a request searches.
type Index int

// Indexes.
const (
	Spans  Index = iota // document.Span
	Traces              // document.Trace
)

// String names the index ("spans" or "traces").
func (i Index) String() string {
	if i == Traces {
		return "traces"
	}
	return "spans"
}

// MaxLimit is the most hits one Request returns: Meilisearch's default maxTotalHits, so both backends page
// the same way.
const MaxLimit = 1000

// DefaultLimit is the number of hits when Request.Limit is 0.
const DefaultLimit = 100

// Request is a search over one index. Filter and Text follow the semantics documented in package query
// (string equality case-insensitive, ordering on numbers only, NOT also matching documents without the
// field, lists matching if any element does).
type Request struct {
	Index  Index
	Filter query.Expr // resolved filter (query.Query.Span or .Trace, possibly extended); nil matches all
	Text   []string   // free-text phrases (spans only): each must occur, as whole words in order, in one of query.SpanSearchable
	// Sort orders hits; empty means start descending. Ties are broken by id ascending, so pages are stable.
	Sort []query.Sort
	// Unordered lets the store return the hits in any order (Sort is ignored), for a caller that reads all
	// of them: sorting is most of the cost of a large Meilisearch search. A store may still sort.
	Unordered bool
	// Distinct, when set, keeps only the first hit (in sort order) per value of this field (e.g. "trace_id").
	Distinct string
	Offset   int
	Limit    int // 0: DefaultLimit; at most MaxLimit
	// Fields, when set, are the only document fields the caller reads from the hits (e.g. "trace_id" for a
	// scope join): a store may leave the others empty, and return less. Empty means whole documents.
	Fields []string
}

// PageSize validates the request's paging and returns how many hits to return: Limit, or DefaultLimit when
// Limit is 0. An error wraps ErrBadRequest.
func (r Request) PageSize() (int, error) {
	limit := r.Limit
	if limit == 0 {
		limit = DefaultLimit
	}
	if limit < 0 || limit > MaxLimit || r.Offset < 0 {
		return 0, fmt.Errorf("%w: offset %d, limit %d (at most %d)", ErrBadRequest, r.Offset, r.Limit, MaxLimit)
	}
	return limit, nil
}

// Result holds the hits of a Request: Spans for the span index, Traces for the trace index.
type Result struct {
	Spans  []document.Span
	Traces []document.Trace
	// Total is the number of matching documents (after Distinct), which may exceed the hits returned.
	Total int
	// Partial means the answer may be incomplete: a store sets it when its search was cut short (Meilisearch's
	// searchCutoffMs), and querysvc.Execute when a query joining span and trace scope matched more than
	// MaxLimit documents on the joined side (the hits then come from the MaxLimit most recent of them).
	Partial bool
}

// FacetCount is one value of a Facet and the number of matching documents holding it.
type FacetCount struct {
	Value string `json:"value"`
	Count int    `json:"count"`
}

// MaxFacetValues is the most values one Facet returns: the maxValuesPerFacet the Meilisearch store sets on
// its indexes (Meilisearch's default is 100).
const MaxFacetValues = 1000

// DefaultFacetLimit is the number of values Facet returns when its limit is 0.
const DefaultFacetLimit = 100

// FacetFields are the fixed fields Facet counts, by index: string fields (a list field counting each
// distinct element once per document). Besides them, Facet counts the attribute fields of FacetPrefixes.
// The conformance suite (package storetest: Facet, SpanFacet, SpanFacetList) checks a store's counts of
// them; Meilisearch counts any filterable field.
var FacetFields = map[Index][]string{
	Spans:  {"service", "name", "kind", "status_code"},
	Traces: {"edges", "services", "root_service"},
}

// FacetPrefixes are the attribute maps Facet counts the fields of, by index: any "attr.<key>" (span
// attributes, business keys such as attr.customer_id among them) and "resource.<key>" of a span, <key> being
// non-empty and without "*" (a Meilisearch wildcard). A number is counted under its shortest decimal form
// (strconv.FormatFloat(x, 'f', -1, 64): 123, 1.5), together with the strings spelled the same, since the
// query language's equality matches both; a boolean counts as "true" or "false".
var FacetPrefixes = map[Index][]string{Spans: {query.AttrPrefix, query.ResourcePrefix}}

// Facetable reports whether Facet counts field in index: one of FacetFields, or an attribute field under one
// of FacetPrefixes.
func Facetable(index Index, field string) bool {
	if slices.Contains(FacetFields[index], field) {
		return true
	}
	for _, p := range FacetPrefixes[index] {
		if key, ok := strings.CutPrefix(field, p); ok && key != "" && !strings.Contains(key, "*") {
			return true
		}
	}
	return false
}

// CheckFacet validates a Facet request and returns its limit (DefaultFacetLimit when 0): field must be
// Facetable and limit from 0 to MaxFacetValues. An error wraps ErrBadRequest.
func CheckFacet(index Index, field string, limit int) (int, error) {
	if !Facetable(index, field) {
		countable := slices.Clone(FacetFields[index])
		for _, p := range FacetPrefixes[index] {
			countable = append(countable, p+"<key>")
		}
		return 0, fmt.Errorf("%w: cannot count the values of %q in the %s index (it counts %s)", ErrBadRequest,
			field, index, strings.Join(countable, ", "))
	}
	if limit == 0 {
		limit = DefaultFacetLimit
	}
	if limit < 0 || limit > MaxFacetValues {
		return 0, fmt.Errorf("%w: facet limit %d (at most %d)", ErrBadRequest, limit, MaxFacetValues)
	}
	return limit, nil
}

// SortFacets orders counts most frequent first, ties by value ascending, and keeps at most limit of them.
func SortFacets(counts []FacetCount, limit int) []FacetCount {
	slices.SortFunc(counts, func(a, b FacetCount) int {
		if a.Count != b.Count {
			return b.Count - a.Count
		}
		return strings.Compare(a.Value, b.Value)
	})
	if len(counts) > limit {
		counts = counts[:limit]
	}
	return counts
}

// ErrBadRequest is wrapped by errors for requests a store cannot run (e.g. Limit above MaxLimit).
var ErrBadRequest = errors.New("bad search request")

// CheckID enforces the document id rule every store applies (Meilisearch's): 1 to 511 bytes of A-Z a-z 0-9
// - _. Stores refuse a batch holding a bad id with an error wrapping ErrBadRequest, before writing any of it.
func CheckID(id string) error {
	if id == "" || len(id) > 511 {
		return fmt.Errorf("%w: invalid id %q: must be 1 to 511 bytes", ErrBadRequest, id)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return fmt.Errorf("%w: invalid id %q: byte %d (%q) is not one of A-Z a-z 0-9 - _", ErrBadRequest, id, i, c)
		}
	}
	return nil
}
