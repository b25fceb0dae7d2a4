// Package document defines the search documents the indexer writes: one per span and one rolled-up document
// per trace. Both stores (Meilisearch and the embedded engine) index exactly these shapes, so the query
// language can be compiled against one schema.
//
// Field rules that follow from Meilisearch's limits: ids are strings (128-bit trace ids do not fit in 2^53),
// times and durations are integer microseconds, and every document id matches [A-Za-z0-9_-]{1,511}.
package document

// Span is the search document of one span.
type Span struct {
	ID            string         `json:"id"` // "<trace_id>-<span_id>", lower-case hex
	TraceID       string         `json:"trace_id"`
	SpanID        string         `json:"span_id"`
	ParentSpanID  string         `json:"parent_span_id,omitempty"`
	Name          string         `json:"name"`
	Kind          string         `json:"kind"`        // "server", "client", "producer", "consumer", "internal", "unspecified"
	Service       string         `json:"service"`     // resource service.name
	Start         int64          `json:"start"`       // unix microseconds
	End           int64          `json:"end"`         // unix microseconds
	Duration      int64          `json:"duration"`    // microseconds
	StatusCode    string         `json:"status_code"` // "unset", "ok", "error"
	StatusMessage string         `json:"status_message,omitempty"`
	Error         bool           `json:"error"`              // StatusCode == "error"
	Attr          map[string]any `json:"attr,omitempty"`     // span attributes, flattened (dotted keys kept as-is)
	Resource      map[string]any `json:"resource,omitempty"` // resource attributes, flattened
	Scope         string         `json:"scope,omitempty"`    // instrumentation scope name
	Events        []Event        `json:"events,omitempty"`
	Links         []Link         `json:"links,omitempty"`
}

// Event is a span event.
type Event struct {
	Name string         `json:"name"`
	Time int64          `json:"time"` // unix microseconds
	Attr map[string]any `json:"attr,omitempty"`
}

// Link is a span link.
type Link struct {
	TraceID string         `json:"trace_id"`
	SpanID  string         `json:"span_id"`
	Attr    map[string]any `json:"attr,omitempty"`
}

// Trace is the rolled-up document of one trace. It converges to the right values however its spans arrive
// (out of order, in several batches, late): see the rollup in this package.
type Trace struct {
	ID          string              `json:"id"` // the trace id, lower-case hex
	TraceID     string              `json:"trace_id"`
	RootService string              `json:"root_service,omitempty"` // empty until the root span is seen
	RootName    string              `json:"root_name,omitempty"`
	Start       int64               `json:"start"`    // earliest span start, unix microseconds
	End         int64               `json:"end"`      // latest span end, unix microseconds
	Duration    int64               `json:"duration"` // End - Start, microseconds
	SpanCount   int                 `json:"span_count"`
	ErrorCount  int                 `json:"error_count"`
	Services    []string            `json:"services"`       // sorted, distinct
	Keys        map[string][]string `json:"keys,omitempty"` // business keys seen on any span: key -> sorted distinct values
}
