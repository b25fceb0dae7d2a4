package query

// Limits on one query. They bound the work a query can ask of the parser, the compiler and the store, so
// a hostile or runaway query (a 13 KB URL, a thousand sort keys, parentheses nested without end) is
// refused with an *Error before any search runs. Each error names the limit and its value; its position is
// where the query first goes past it.
const (
	// MaxQueryBytes is the longest query text accepted, in bytes. The error points at the first byte past
	// the limit.
	MaxQueryBytes = 4096
	// MaxSortKeys is the most sort= keys a query may have, and each field may be sorted by only once (a
	// repeated key could not change the order). There are eight fields to sort by (start, end, duration,
	// trace.start, trace.end, trace.duration, trace.span_count, trace.error_count), so every order fits.
	MaxSortKeys = 8
	// MaxTerms is the most terms a query may have: conditions (each value of an IN list counting as one),
	// free-text words and phrases, and the since/until/between/sort settings.
	MaxTerms = 256
	// MaxDepth is the deepest nesting of parentheses and NOT a query may have; it bounds the recursion of
	// the parser and of every compiler of the tree.
	MaxDepth = 32
	// MaxValueBytes is the longest value an equality (=, !=, IN) may compare with: Meilisearch indexes the
	// first 468 bytes of a filterable string (its facet key limit, 500 bytes less 32 of its own), so a longer
	// value could never match, and the embedded store indexes the same prefix. A stored value longer than
	// that is found by its first MaxValueBytes bytes.
	MaxValueBytes = 468
)
