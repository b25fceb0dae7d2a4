// Package flatten turns OTLP trace data into span search documents (document.Span): hex ids, integer
// microsecond times, kind and status as lower-case words, and attribute values flattened to JSON-safe scalars.
//
// Spans that cannot be indexed (bad or missing ids, missing or inverted times) are rejected one by one and
// counted, so that the receiver can answer with an OTLP partial success instead of failing the whole request.
//
// A request that exceeds its Limits (too many spans, attributes, events, links or array elements, keys or
// strings too long, values nested too deep) is refused as a whole with a *LimitError. The limits are checked
// while walking the request, before the string, map or slice they bound is built, so that flattening allocates
// in proportion to the request body, never to counts or lengths the body claims. Both entry points, FromProtobuf
// (protobuf wire bytes) and Spans (decoded OTLP types, from gRPC or OTLP/JSON), check the same limits in the same
// order and so refuse the same requests with the same error; FuzzFromProtobuf checks that.
package flatten

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"math"
	"slices"
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
//
// A request exceeding lim is refused as a whole: the error is a *LimitError and dst is returned as it was
// passed. Limits are checked on every span, including those rejected for their ids or times.
func Spans(dst []document.Span, rss []*tracepb.ResourceSpans, lim Limits) ([]document.Span, Rejected, error) {
	c := checker{lim: lim.resolve()}
	n := Count(rss)
	if err := c.spans(n); err != nil {
		return dst, Rejected{}, err
	}
	orig, grown := len(dst), false
	var rej Rejected
	var envoy envoyResources
	for i, rs := range rss {
		if rs == nil {
			continue
		}
		resource, err := c.attributes(rs.GetResource().GetAttributes(), spanAt(i, -1, -1, "resource.attributes"), true)
		if err != nil {
			return dst[:orig], Rejected{}, err
		}
		service := UnknownService
		if s, ok := resource["service.name"].(string); ok && s != "" {
			service = s
		}
		envoy.reset(resource)
		for j, ss := range rs.ScopeSpans {
			if ss == nil {
				continue
			}
			scope := ss.GetScope().GetName()
			if err := c.str(spanAt(i, j, -1, "scope.name"), len(scope)); err != nil {
				return dst[:orig], Rejected{}, err
			}
			for k, sp := range ss.Spans {
				if sp == nil {
					continue
				}
				doc, reason, err := c.span(sp, spanAt(i, j, k, ""))
				if err != nil {
					return dst[:orig], Rejected{}, err
				}
				if reason != "" {
					rej.add(fmt.Sprintf("resourceSpans[%d].scopeSpans[%d].spans[%d]", i, j, k), reason)
					continue
				}
				doc.Service = service
				doc.Resource = resource
				doc.Scope = scope
				envoy.envoySpan(&doc)
				if !grown { // room for every span, at most MaxSpans, allocated once a span is valid
					dst, grown = slices.Grow(dst, n), true
				}
				dst = append(dst, doc)
			}
		}
	}
	return dst, rej, nil
}

// Count returns the number of spans in rss (for sizing and for admission control), nil entries included.
func Count(rss []*tracepb.ResourceSpans) int {
	n := 0
	for _, rs := range rss {
		for _, ss := range rs.GetScopeSpans() {
			n += len(ss.GetSpans())
		}
	}
	return n
}

// span flattens one span; reason says why it is rejected, err that it exceeds the limits. The checks run in
// this order, which FromProtobuf follows too: counts of attributes, events and links; name and status message;
// attributes; events (name, attributes) in order; links (attributes) in order; then ids and times.
func (c *checker) span(sp *tracepb.Span, at where) (document.Span, string, error) {
	st := sp.GetStatus()
	if err := c.spanCounts(at, len(sp.Attributes), len(sp.Events), len(sp.Links), len(sp.Name), len(st.GetMessage())); err != nil {
		return document.Span{}, "", err
	}
	attr, err := c.attributes(sp.Attributes, at.at("attributes", -1, ""), false)
	if err != nil {
		return document.Span{}, "", err
	}
	var events []document.Event
	if len(sp.Events) > 0 {
		events = make([]document.Event, len(sp.Events))
		for i, e := range sp.Events {
			if err := c.str(at.at("events", i, "name"), len(e.GetName())); err != nil {
				return document.Span{}, "", err
			}
			a, err := c.attributes(e.GetAttributes(), at.at("events", i, "attributes"), false)
			if err != nil {
				return document.Span{}, "", err
			}
			events[i] = document.Event{Name: e.GetName(), Time: int64(e.GetTimeUnixNano() / 1000), Attr: a}
		}
	}
	var linkAttrs []map[string]any
	if len(sp.Links) > 0 {
		linkAttrs = make([]map[string]any, len(sp.Links))
		for i, l := range sp.Links {
			if linkAttrs[i], err = c.attributes(l.GetAttributes(), at.at("links", i, "attributes"), false); err != nil {
				return document.Span{}, "", err
			}
		}
	}
	if reason := checkSpan(sp.TraceId, sp.SpanId, sp.ParentSpanId, sp.StartTimeUnixNano, sp.EndTimeUnixNano); reason != "" {
		return document.Span{}, reason, nil
	}
	for i, l := range sp.Links {
		if reason := checkLink(i, l.GetTraceId(), l.GetSpanId()); reason != "" {
			return document.Span{}, reason, nil
		}
	}
	doc := newSpan(sp.TraceId, sp.SpanId, sp.ParentSpanId, sp.Name, int32(sp.Kind), sp.StartTimeUnixNano, sp.EndTimeUnixNano,
		int32(st.GetCode()), st.GetMessage())
	doc.Attr, doc.Events = attr, events
	if len(sp.Links) > 0 {
		doc.Links = make([]document.Link, len(sp.Links))
		for i, l := range sp.Links {
			doc.Links[i] = newLink(l.GetTraceId(), l.GetSpanId(), linkAttrs[i])
		}
	}
	return doc, "", nil
}

// spanCounts checks what both walkers know of a span before flattening any of it.
func (c *checker) spanCounts(at where, attrs, events, links, name, message int) error {
	l := &c.lim
	if attrs <= l.MaxAttributes && events <= l.MaxEvents && links <= l.MaxLinks && name <= l.MaxValueBytes &&
		message <= l.MaxValueBytes {
		return nil // the common case, without building the locations below
	}
	if err := c.count(at.at("attributes", -1, ""), "MaxAttributes", c.lim.MaxAttributes, attrs); err != nil {
		return err
	}
	if err := c.count(at.at("events", -1, ""), "MaxEvents", c.lim.MaxEvents, events); err != nil {
		return err
	}
	if err := c.count(at.at("links", -1, ""), "MaxLinks", c.lim.MaxLinks, links); err != nil {
		return err
	}
	if err := c.str(at.at("name", -1, ""), name); err != nil {
		return err
	}
	return c.str(at.at("status.message", -1, ""), message)
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
	// One allocation holds the four ids: "<trace_id>-<span_id>", its two halves, and the parent's id after it.
	var buf [16*2 + 1 + 8*2 + 8*2]byte
	hex.Encode(buf[:32], traceID)
	buf[32] = '-'
	hex.Encode(buf[33:49], spanID)
	n := 49
	parent := hasParent(parentID)
	if parent && len(parentID) == 8 {
		n += hex.Encode(buf[49:], parentID)
	}
	ids := string(buf[:n])
	id := ids[:49]
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
	switch {
	case n > 49:
		doc.ParentSpanID = ids[49:]
	case parent:
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
// into "key.sub" entries, and values become JSON-safe (see Value). It returns nil for no attributes. It applies
// no Limits: it is for trusted data.
func Attributes(kvs []*commonpb.KeyValue) map[string]any {
	c := checker{lim: noLimits}
	m, _ := c.attributes(kvs, where{}, false)
	return m
}

// attributes flattens an attribute set within the limits: nil when there are none.
func (c *checker) attributes(kvs []*commonpb.KeyValue, at where, resource bool) (map[string]any, error) {
	if err := c.startSet(at, resource, len(kvs)); err != nil || len(kvs) == 0 {
		return nil, err
	}
	m := make(map[string]any, len(kvs))
	if err := c.flattenInto(m, "", kvs, 0); err != nil {
		return nil, err
	}
	return m, nil
}

// flattenInto adds kvs to m under prefix; depth is that of the values of kvs.
func (c *checker) flattenInto(m map[string]any, prefix string, kvs []*commonpb.KeyValue, depth int) error {
	for _, kv := range kvs {
		if err := c.pair(); err != nil {
			return err
		}
		if kv == nil || kv.Key == "" {
			continue
		}
		if err := c.key(len(prefix), len(kv.Key)); err != nil {
			return err
		}
		if kvl, ok := kv.Value.GetValue().(*commonpb.AnyValue_KvlistValue); ok {
			if err := c.nest(prefix, kv.Key, depth+1); err != nil {
				return err
			}
			if err := c.flattenInto(m, prefix+kv.Key+".", kvl.KvlistValue.GetValues(), depth+1); err != nil {
				return err
			}
			continue
		}
		v, err := c.value(kv.Value, prefix, kv.Key, depth)
		if err != nil {
			return err
		}
		if v != nil {
			m[prefix+kv.Key] = v
		}
	}
	return nil
}

// Value converts an OTLP AnyValue into a JSON-safe Go value: string, bool, int64 within +-2^53 (larger integers
// become decimal strings, which Meilisearch would otherwise round), float64 (NaN and infinities become strings),
// []any for arrays, map[string]any for key-value lists inside arrays, base64 strings for bytes. An empty value
// is nil. It applies no Limits: it is for trusted data.
func Value(v *commonpb.AnyValue) any {
	c := checker{lim: noLimits, max: noLimit}
	x, _ := c.value(v, "", "", 0)
	return x
}

// value converts v, the value at depth of the pair with flattened key prefix+key, within the limits.
func (c *checker) value(v *commonpb.AnyValue, prefix, key string, depth int) (any, error) {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		if err := c.checkValue(prefix, key, len(x.StringValue)); err != nil {
			return nil, err
		}
		return x.StringValue, nil
	case *commonpb.AnyValue_BoolValue:
		return x.BoolValue, nil
	case *commonpb.AnyValue_IntValue:
		return intValue(x.IntValue), nil
	case *commonpb.AnyValue_DoubleValue:
		return doubleValue(x.DoubleValue), nil
	case *commonpb.AnyValue_BytesValue:
		if err := c.checkBytes(prefix, key, len(x.BytesValue)); err != nil {
			return nil, err
		}
		return bytesValue(x.BytesValue), nil
	case *commonpb.AnyValue_ArrayValue:
		if err := c.nest(prefix, key, depth+1); err != nil {
			return nil, err
		}
		vals := x.ArrayValue.GetValues()
		if err := c.array(prefix, key, len(vals)); err != nil {
			return nil, err
		}
		out := make([]any, 0, len(vals))
		for _, e := range vals {
			ev, err := c.value(e, prefix, key, depth+1)
			if err != nil {
				return nil, err
			}
			if ev != nil {
				out = append(out, ev)
			}
		}
		return out, nil
	case *commonpb.AnyValue_KvlistValue:
		if err := c.nest(prefix, key, depth+1); err != nil {
			return nil, err
		}
		kvs := x.KvlistValue.GetValues()
		m := make(map[string]any, min(len(kvs), c.keepParts()))
		if err := c.flattenInto(m, "", kvs, depth+1); err != nil {
			return nil, err
		}
		return m, nil
	}
	return nil, nil
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
