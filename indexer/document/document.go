// Package document defines the search documents the indexer writes: one per span and one rolled-up document
// per trace. Both stores (Meilisearch and the embedded engine) index exactly these shapes, so the query
// language can be compiled against one schema.
//
// Field rules that follow from Meilisearch's limits: ids are strings (128-bit trace ids do not fit in 2^53),
// times and durations are integer microseconds, and every document id matches [A-Za-z0-9_-]{1,511}.
package document

import (
	"encoding/json"
	"fmt"
	"iter"
	"slices"
	"strings"
)

// Span is the search document of one span.
type Span struct {
	ID            string         `json:"id"`               // SpanDocID: "<trace_id>-<span_id>", lower-case hex, after "<tenant>_" when there is one
	Tenant        string         `json:"tenant,omitempty"` // set at ingest from where the span came from (package tenant)
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
	// Overflow holds the attributes that were not indexed because the index reached its cap on distinct
	// attribute keys (package fieldcap), as the text of one JSON object keyed by where each attribute came from:
	// {"attr.k":"v","resource.x":1,"events[2].attr.y":true,"links[0].attr.z":"w"}. It is empty when nothing
	// overflowed. Stores keep it and return it with the document but never index it (it is not searchable,
	// filterable or sortable), so it adds one field name to an index however many keys it holds.
	Overflow string `json:"overflow,omitempty"`
}

// OverflowField is the JSON name of Span.Overflow.
const OverflowField = "overflow"

// OverflowAttributes decodes Overflow (nil when it is empty). Numbers decode as float64, as with every other
// attribute value read back from a store.
func (s *Span) OverflowAttributes() (map[string]any, error) {
	if s.Overflow == "" {
		return nil, nil
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(s.Overflow), &m); err != nil {
		return nil, fmt.Errorf("document: span %s: overflow: %w", s.ID, err)
	}
	return m, nil
}

// SpanDocID is the document id of span spanID of trace traceID sent by tenant: "<trace_id>-<span_id>", after
// "<tenant>_" when tenant is not empty, so that tenants never overwrite each other's spans.
func SpanDocID(tenant, traceID, spanID string) string {
	if tenant == "" {
		return traceID + "-" + spanID
	}
	return tenant + "_" + traceID + "-" + spanID
}

// TraceDocID is the id of the trace document of tenant's part of trace traceID: the trace id, after
// "<tenant>_" when tenant is not empty.
func TraceDocID(tenant, traceID string) string {
	if tenant == "" {
		return traceID
	}
	return tenant + "_" + traceID
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
// (out of order, in several batches, late, more than once): package rollup computes it.
type Trace struct {
	ID          string              `json:"id"`               // TraceDocID: the trace id, lower-case hex, after "<tenant>_" when there is one
	Tenant      string              `json:"tenant,omitempty"` // the tenant of its spans: a trace crossing tenants has a document per tenant
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
	// Edges are the trace's service-to-service calls, each "parent>child" (see Edge), sorted and distinct:
	// the service graph (GET /api/dependencies) counts them across traces. Package rollup documents which
	// spans make an edge.
	Edges []string `json:"edges,omitempty"`
}

// EdgeSep separates the two nodes of an edge of Trace.Edges.
const EdgeSep = ">"

// Edge is the Trace.Edges entry of a call from node parent to node child. Nodes are service names (or
// "topic:<name>" for a messaging destination); a node containing EdgeSep cannot be told apart and makes no
// edge, so Edge returns "" for it, as for an empty node.
func Edge(parent, child string) string {
	if parent == "" || child == "" || strings.Contains(parent, EdgeSep) || strings.Contains(child, EdgeSep) {
		return ""
	}
	return parent + EdgeSep + child
}

// ParseEdge splits an entry of Trace.Edges into its nodes; ok is false for anything Edge does not produce.
func ParseEdge(e string) (parent, child string, ok bool) {
	parent, child, ok = strings.Cut(e, EdgeSep)
	if !ok || parent == "" || child == "" || strings.Contains(child, EdgeSep) {
		return "", "", false
	}
	return parent, child, true
}

// Attribute map paths: where span documents hold attributes. Each attribute key k of such a map becomes the
// field "<path>.<k>" of the index (both stores flatten nested objects to dotted names, arrays of events and
// links included), so the number of distinct keys across spans is the number of fields an index grows to.
const (
	AttrPath         = "attr"
	ResourcePath     = "resource"
	EventAttrPath    = "events.attr"
	LinkAttrPath     = "links.attr"
	attributePathSep = "."
)

// AttributePaths lists the attribute map paths.
var AttributePaths = []string{AttrPath, ResourcePath, EventAttrPath, LinkAttrPath}

// AttributeFieldNames returns the names of the index fields that attribute key with value v of the map at
// path creates: "<path>.<key>", plus "<path>.<key>.<sub>" for every key of an object inside an array value
// (recursively: key-value lists inside arrays are the only nested objects OTLP attributes flatten to).
// The result is sorted and distinct.
func AttributeFieldNames(path, key string, v any) []string {
	name := path + attributePathSep + key
	if _, isList := v.([]any); !isList {
		return []string{name}
	}
	seen := map[string]bool{name: true}
	collectNested(seen, name, v)
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

func collectNested(seen map[string]bool, name string, v any) {
	switch x := v.(type) {
	case []any:
		for _, e := range x {
			collectNested(seen, name, e)
		}
	case map[string]any:
		for k, e := range x {
			sub := name + attributePathSep + k
			seen[sub] = true
			collectNested(seen, sub, e)
		}
	}
}

// AttributeFields yields the names of the index fields the span's attributes create (see
// AttributeFieldNames), in no particular order and possibly repeated.
func (s *Span) AttributeFields() iter.Seq[string] {
	return func(yield func(string) bool) {
		each := func(path string, m map[string]any) bool {
			for k, v := range m {
				for _, n := range AttributeFieldNames(path, k, v) {
					if !yield(n) {
						return false
					}
				}
			}
			return true
		}
		if !each(AttrPath, s.Attr) || !each(ResourcePath, s.Resource) {
			return
		}
		for i := range s.Events {
			if !each(EventAttrPath, s.Events[i].Attr) {
				return
			}
		}
		for i := range s.Links {
			if !each(LinkAttrPath, s.Links[i].Attr) {
				return
			}
		}
	}
}

// IsAttributeField reports whether an index field name lies under one of the attribute map paths.
func IsAttributeField(name string) bool {
	for _, p := range AttributePaths {
		if len(name) > len(p)+1 && name[:len(p)] == p && name[len(p)] == '.' {
			return true
		}
	}
	return false
}
