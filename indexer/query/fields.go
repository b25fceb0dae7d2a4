package query

import "strings"

// Scope says which document kind a field belongs to.
type Scope int

// Scopes.
const (
	SpanScope  Scope = iota // span documents (document.Span)
	TraceScope              // trace documents (document.Trace), fields written with the "trace." prefix
)

// String names the scope.
func (s Scope) String() string {
	if s == TraceScope {
		return "trace"
	}
	return "span"
}

// Kind is the type of a document field, which decides the literals and operators it accepts.
type Kind int

// Field kinds.
const (
	KindString   Kind = iota // text; =, !=, IN compare case-insensitively
	KindStrings              // list of text; a condition matches if any element matches
	KindNumber               // integer
	KindBool                 // true or false
	KindTime                 // unix microseconds; literals are RFC 3339 times or integers
	KindDuration             // microseconds; literals carry a unit: 500ms, 2s, 1m30s
	KindAny                  // attribute of any JSON type (text, number, bool, list)
)

// Field is a resolved document field.
type Field struct {
	Path  string // JSON path in the document, dot-separated (as Meilisearch filters name nested fields)
	Scope Scope
	Kind  Kind
}

// Document field prefixes for attribute maps.
const (
	AttrPrefix     = "attr."     // span attributes (document.Span.Attr)
	ResourcePrefix = "resource." // resource attributes (document.Span.Resource)
	KeysPrefix     = "keys."     // business keys of a trace (document.Trace.Keys)
	tracePrefix    = "trace."    // query-language prefix selecting trace scope
)

// SpanFields lists the fixed fields of span documents by path.
var SpanFields = map[string]Kind{
	"id":             KindString,
	"trace_id":       KindString,
	"span_id":        KindString,
	"parent_span_id": KindString,
	"name":           KindString,
	"kind":           KindString,
	"service":        KindString,
	"start":          KindTime,
	"end":            KindTime,
	"duration":       KindDuration,
	"status_code":    KindString,
	"status_message": KindString,
	"error":          KindBool,
	"scope":          KindString,
	"events.name":    KindStrings,
	"links.trace_id": KindStrings,
	"links.span_id":  KindStrings,
	"tenant":         KindString,
}

// TraceFields lists the fixed fields of trace documents by path.
var TraceFields = map[string]Kind{
	"id":           KindString,
	"trace_id":     KindString,
	"root_service": KindString,
	"root_name":    KindString,
	"start":        KindTime,
	"end":          KindTime,
	"duration":     KindDuration,
	"span_count":   KindNumber,
	"error_count":  KindNumber,
	"services":     KindStrings,
	"tenant":       KindString,
}

// SpanSearchable are the span fields free text is matched against (whole words, in order,
// case-insensitive): the span's name, status message and event names, and the attributes OpenTelemetry
// defines for messages and operation names. Other attributes (ids, addresses, user agents, hashes, business
// keys) are matched with conditions (customer_id=123): indexing their words for free text would halve how
// fast Meilisearch indexes spans (docs/stores.md). Free text applies to span documents only; see Query.Text.
var SpanSearchable = []string{"name", "status_message", "events.name",
	AttrPrefix + "exception.message", AttrPrefix + "exception.type", AttrPrefix + "error.type",
	AttrPrefix + "http.route", AttrPrefix + "db.statement", AttrPrefix + "db.query.text", AttrPrefix + "db.system",
	AttrPrefix + "messaging.system", AttrPrefix + "messaging.destination.name",
	AttrPrefix + "rpc.service", AttrPrefix + "rpc.method"}

// aliases maps convenient names to document paths, per scope.
var aliases = map[Scope]map[string]string{
	SpanScope:  {"status": "status_code", "event": "events.name"},
	TraceScope: {"service": "services"},
}

// Resolve maps a field name as written in a query to a document field:
//   - "trace.<name>" is a trace field; unknown trace names are business keys ("trace.customer_id" -> keys.customer_id);
//   - fixed span fields resolve to themselves, "attr.<name>" and "resource.<name>" to attributes;
//   - any other bare name is a span attribute ("customer_id" -> attr.customer_id).
func Resolve(name string) Field {
	scope, fixed, dynamic := SpanScope, SpanFields, AttrPrefix
	if rest, ok := strings.CutPrefix(name, tracePrefix); ok {
		scope, fixed, dynamic, name = TraceScope, TraceFields, KeysPrefix, rest
	}
	if a, ok := aliases[scope][name]; ok {
		name = a
	}
	if k, ok := fixed[name]; ok {
		return Field{Path: name, Scope: scope, Kind: k}
	}
	if scope == SpanScope && strings.HasPrefix(name, ResourcePrefix) {
		return Field{Path: name, Scope: scope, Kind: KindAny}
	}
	if strings.HasPrefix(name, dynamic) {
		return Field{Path: name, Scope: scope, Kind: KindAny}
	}
	return Field{Path: dynamic + name, Scope: scope, Kind: KindAny}
}
