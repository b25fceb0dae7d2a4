// Package flatten turns OTLP trace data into span search documents (document.Span): hex ids, integer
// microsecond times, kind and status as lower-case words, and attribute values flattened to JSON-safe scalars.
//
// Spans that cannot be indexed (bad or missing ids, missing or inverted times) are rejected one by one and
// counted, so that the receiver can answer with an OTLP partial success instead of failing the whole request.
package flatten

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"math"
	"strconv"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/meshtrace/meshtrace/indexer/document"
)

// UnknownService is the service of spans whose resource has no service.name attribute.
const UnknownService = "unknown_service"

// maxSafeInt is the largest integer a JSON number keeps exactly in Meilisearch and JavaScript (2^53).
const maxSafeInt = 1 << 53

// Rejected counts the spans that were not turned into documents and describes the first one.
type Rejected struct {
	Count   int64
	Message string // empty when Count is 0
}

func (r *Rejected) add(path string, err string) {
	if r.Count == 0 {
		r.Message = path + ": " + err
	}
	r.Count++
}

// Summary is the message for an OTLP partial success: the count and the first reason.
func (r Rejected) Summary() string {
	if r.Count == 0 {
		return ""
	}
	if r.Count == 1 {
		return "1 span rejected: " + r.Message
	}
	return fmt.Sprintf("%d spans rejected; first: %s", r.Count, r.Message)
}

// Spans appends the documents of every valid span in rss to dst and returns the extended slice and what was
// rejected. Documents of one resource share its Resource map, and documents must be treated as read-only.
func Spans(dst []document.Span, rss []*tracepb.ResourceSpans) ([]document.Span, Rejected) {
	var rej Rejected
	for i, rs := range rss {
		if rs == nil {
			continue
		}
		var resource map[string]any
		service := UnknownService
		if r := rs.GetResource(); r != nil && len(r.Attributes) > 0 {
			resource = Attributes(r.Attributes)
			if s, ok := resource["service.name"].(string); ok && s != "" {
				service = s
			}
		}
		for j, ss := range rs.ScopeSpans {
			if ss == nil {
				continue
			}
			scope := ss.GetScope().GetName()
			for k, sp := range ss.Spans {
				if sp == nil {
					continue
				}
				doc, err := span(sp)
				if err != "" {
					rej.add(fmt.Sprintf("resourceSpans[%d].scopeSpans[%d].spans[%d]", i, j, k), err)
					continue
				}
				doc.Service = service
				doc.Resource = resource
				doc.Scope = scope
				dst = append(dst, doc)
			}
		}
	}
	return dst, rej
}

// Count returns the number of spans in rss (for sizing and for admission control).
func Count(rss []*tracepb.ResourceSpans) int {
	n := 0
	for _, rs := range rss {
		for _, ss := range rs.GetScopeSpans() {
			n += len(ss.GetSpans())
		}
	}
	return n
}

func span(sp *tracepb.Span) (document.Span, string) {
	if err := checkSpan(sp.TraceId, sp.SpanId, sp.ParentSpanId, sp.StartTimeUnixNano, sp.EndTimeUnixNano); err != "" {
		return document.Span{}, err
	}
	for i, l := range sp.Links {
		if err := checkLink(i, l.TraceId, l.SpanId); err != "" {
			return document.Span{}, err
		}
	}
	st := sp.GetStatus()
	doc := newSpan(sp.TraceId, sp.SpanId, sp.ParentSpanId, sp.Name, int32(sp.Kind), sp.StartTimeUnixNano, sp.EndTimeUnixNano,
		int32(st.GetCode()), st.GetMessage())
	doc.Attr = Attributes(sp.Attributes)
	if len(sp.Links) > 0 {
		doc.Links = make([]document.Link, len(sp.Links))
		for i, l := range sp.Links {
			doc.Links[i] = newLink(l.TraceId, l.SpanId, Attributes(l.Attributes))
		}
	}
	if len(sp.Events) > 0 {
		doc.Events = make([]document.Event, len(sp.Events))
		for i, e := range sp.Events {
			doc.Events[i] = document.Event{Name: e.Name, Time: int64(e.TimeUnixNano / 1000), Attr: Attributes(e.Attributes)}
		}
	}
	return doc, ""
}

// checkSpan returns why a span with these ids and times cannot be indexed, or "".
func checkSpan(traceID, spanID, parentID []byte, start, end uint64) string {
	if err := checkID(traceID, 16); err != "" {
		return "trace_id " + err
	}
	if err := checkID(spanID, 8); err != "" {
		return "span_id " + err
	}
	if hasParent(parentID) {
		if err := checkID(parentID, 8); err != "" {
			return "parent_span_id " + err
		}
	}
	if start == 0 {
		return "start_time_unix_nano is missing"
	}
	if end < start {
		return "end_time_unix_nano is before start_time_unix_nano"
	}
	return ""
}

// checkLink returns why link i of a span cannot be indexed, or "".
func checkLink(i int, traceID, spanID []byte) string {
	if err := checkID(traceID, 16); err != "" {
		return fmt.Sprintf("links[%d].trace_id %s", i, err)
	}
	if err := checkID(spanID, 8); err != "" {
		return fmt.Sprintf("links[%d].span_id %s", i, err)
	}
	return ""
}

// hasParent reports whether a parent span id names a parent: empty and all-zero ids mean none.
func hasParent(parentID []byte) bool {
	return len(parentID) != 0 && (len(parentID) != 8 || !allZero(parentID))
}

// newSpan builds the document of a span that passed checkSpan, without attributes, events and links.
func newSpan(traceID, spanID, parentID []byte, name string, kind int32, start, end uint64, status int32, message string) document.Span {
	// One allocation holds the three ids: "<trace_id>-<span_id>" and its two halves.
	var buf [16*2 + 1 + 8*2]byte
	hex.Encode(buf[:32], traceID)
	buf[32] = '-'
	hex.Encode(buf[33:], spanID)
	id := string(buf[:])
	doc := document.Span{
		ID:            id,
		TraceID:       id[:32],
		SpanID:        id[33:],
		Name:          name,
		Kind:          Kind(tracepb.Span_SpanKind(kind)),
		Start:         int64(start / 1000),
		End:           int64(end / 1000),
		StatusCode:    Status(tracepb.Status_StatusCode(status)),
		StatusMessage: message,
	}
	if hasParent(parentID) {
		doc.ParentSpanID = hex.EncodeToString(parentID)
	}
	doc.Duration = doc.End - doc.Start
	doc.Error = doc.StatusCode == "error"
	return doc
}

func newLink(traceID, spanID []byte, attr map[string]any) document.Link {
	return document.Link{TraceID: hex.EncodeToString(traceID), SpanID: hex.EncodeToString(spanID), Attr: attr}
}

// checkID returns why b is not a valid id of size bytes, or "".
func checkID(b []byte, size int) string {
	switch {
	case len(b) != size:
		return fmt.Sprintf("must be %d bytes, got %d", size, len(b))
	case allZero(b):
		return "is all zeros"
	}
	return ""
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// Kind is the document form of a span kind: "server", "client", "producer", "consumer", "internal" or
// "unspecified".
func Kind(k tracepb.Span_SpanKind) string {
	switch k {
	case tracepb.Span_SPAN_KIND_INTERNAL:
		return "internal"
	case tracepb.Span_SPAN_KIND_SERVER:
		return "server"
	case tracepb.Span_SPAN_KIND_CLIENT:
		return "client"
	case tracepb.Span_SPAN_KIND_PRODUCER:
		return "producer"
	case tracepb.Span_SPAN_KIND_CONSUMER:
		return "consumer"
	}
	return "unspecified"
}

// Status is the document form of a status code: "unset", "ok" or "error".
func Status(c tracepb.Status_StatusCode) string {
	switch c {
	case tracepb.Status_STATUS_CODE_OK:
		return "ok"
	case tracepb.Status_STATUS_CODE_ERROR:
		return "error"
	}
	return "unset"
}

// Attributes flattens OTLP attributes into a map: dotted keys are kept as they are, key-value lists are flattened
// into "key.sub" entries, and values become JSON-safe (see Value). It returns nil for no attributes.
func Attributes(kvs []*commonpb.KeyValue) map[string]any {
	if len(kvs) == 0 {
		return nil
	}
	m := make(map[string]any, len(kvs))
	flattenInto(m, "", kvs)
	return m
}

func flattenInto(m map[string]any, prefix string, kvs []*commonpb.KeyValue) {
	for _, kv := range kvs {
		if kv == nil || kv.Key == "" {
			continue
		}
		if kvl, ok := kv.Value.GetValue().(*commonpb.AnyValue_KvlistValue); ok {
			flattenInto(m, prefix+kv.Key+".", kvl.KvlistValue.GetValues())
			continue
		}
		if v := Value(kv.Value); v != nil {
			m[prefix+kv.Key] = v
		}
	}
}

// Value converts an OTLP AnyValue into a JSON-safe Go value: string, bool, int64 within +-2^53 (larger integers
// become decimal strings, which Meilisearch would otherwise round), float64 (NaN and infinities become strings),
// []any for arrays, map[string]any for key-value lists inside arrays, base64 strings for bytes. An empty value
// is nil.
func Value(v *commonpb.AnyValue) any {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_BoolValue:
		return x.BoolValue
	case *commonpb.AnyValue_IntValue:
		return intValue(x.IntValue)
	case *commonpb.AnyValue_DoubleValue:
		return doubleValue(x.DoubleValue)
	case *commonpb.AnyValue_BytesValue:
		return bytesValue(x.BytesValue)
	case *commonpb.AnyValue_ArrayValue:
		vals := x.ArrayValue.GetValues()
		out := make([]any, 0, len(vals))
		for _, e := range vals {
			if ev := Value(e); ev != nil {
				out = append(out, ev)
			}
		}
		return out
	case *commonpb.AnyValue_KvlistValue:
		m := make(map[string]any, len(x.KvlistValue.GetValues()))
		flattenInto(m, "", x.KvlistValue.GetValues())
		return m
	}
	return nil
}

func intValue(n int64) any {
	if n > maxSafeInt || n < -maxSafeInt {
		return strconv.FormatInt(n, 10)
	}
	return n
}

func doubleValue(f float64) any {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return strconv.FormatFloat(f, 'g', -1, 64)
	}
	return f
}

func bytesValue(b []byte) any { return base64.StdEncoding.EncodeToString(b) }
