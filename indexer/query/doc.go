// Package query is meshtrace's query language: one line that finds spans or traces, such as
//
//	customer_id=123 service=inventory-service duration>500ms since=1h error=true "connection reset"
//
// Parse turns the text into a syntax tree (Expr) with the names as written; Compile resolves the names to
// document fields (Resolve, SpanFields, TraceFields), checks every literal against its field's Kind, turns
// durations and times into integer microseconds, and splits the tree by scope into a Query. Stores compile
// Query.Span and Query.Trace into their own filters; package querysvc runs a Query over any store. The
// grammar is on Parse, the limits that bound a query's work are MaxQueryBytes, MaxTerms, MaxDepth and
// MaxSortKeys, and errors are *Error values carrying the position.
//
// # Semantics
//
// Every store means the same by a query (package storetest checks it); the semantics are those of
// Meilisearch's filters, which the embedded store reproduces:
//
//   - Conditions separated by spaces (or AND) must all hold; OR and NOT combine them as usual, NOT binding
//     tightest, then AND, then OR.
//   - =, != and IN compare text case-insensitively. A value that reads as a number also equals a numeric
//     field: customer_id=123 matches the string "123" and the number 123, and quotes change nothing.
//   - <, <=, > and >= order numbers only (durations and times are numbers of microseconds); on a text field
//     they are a compile error.
//   - A list field (KindStrings, or an attribute holding a list) matches a condition when any of its
//     elements does.
//   - NOT c and a != b also match documents that do not have the field; field EXISTS matches documents that
//     have it, whatever the value.
//   - Free text (a word or a quoted phrase) must occur as whole words, in order, case-insensitively, within
//     one value of a span's searchable fields (SpanSearchable): no prefixes, no typos. Compile moves it out of
//     the filter into Query.Text, so it is a top-level term and may not sit under OR or NOT.
//   - hash("v") as the value of =, != or IN (customer_id = hash("1234567")) stands for what a filter tag
//     with "hash": true records for v: its hex HMAC-SHA256 under the filter's key, which the compiler is
//     given (WithHMACKey; the indexer's --hmac-key-file) so that searchers never hold it. v is compared as
//     the tag's transforms leave it (lowercase, regex, max_length): hash("Cust-42") is not hash("42").
//     Without a key hash(...) is a compile error.
//   - since=, until= and between= bound the start of every document searched (Query.Since, Query.Until);
//     sort= orders the hits by numeric fields (Query.Sort; default: most recent first). They are top-level
//     terms.
//
// # Span scope and trace scope
//
// Every condition belongs to one scope: fields written with the "trace." prefix to the trace documents (one
// rolled-up document per trace, document.Trace), everything else to the span documents (document.Span).
// Scopes meet only at the top level, where they combine as a conjunction (an OR or NOT mixing them is a
// compile error):
//
//   - a span matches when it satisfies the span conditions and the free text, and its trace satisfies the
//     trace conditions;
//   - a trace matches when it satisfies the trace conditions and at least one of its spans satisfies all the
//     span conditions and the free text (the same span).
//
// Query.Target is what a query returns by default: traces when it names a trace field, spans otherwise.
package query
