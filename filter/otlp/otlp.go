// Package otlp encodes spans as an OTLP ExportTraceServiceRequest (opentelemetry.proto.collector.trace.v1)
// in protobuf wire format, by hand: the plugin is built with TinyGo, where protobuf-go's reflection does not
// fit. Spans are encoded once, when they finish, into a Batch; a request wraps a batch in one ResourceSpans.
package otlp

import (
	"github.com/meshtrace/meshtrace/filter/span"
)

// ContentType is the media type of an encoded request.
const ContentType = "application/x-protobuf"

// Resource is the identity a batch is exported under, with the instrumentation scope of its spans.
type Resource struct {
	Attrs        []span.Attr
	ScopeName    string
	ScopeVersion string
}

// Batch holds encoded spans (each as a ScopeSpans.spans field) waiting to be sent.
type Batch struct {
	buf []byte
	n   int
}

// Add encodes s into the batch.
func (b *Batch) Add(s *span.Span) {
	b.buf = appendSpan(b.buf, s)
	b.n++
}

// Len returns the number of spans in the batch.
func (b *Batch) Len() int { return b.n }

// Reset empties the batch, keeping its memory.
func (b *Batch) Reset() {
	b.buf = b.buf[:0]
	b.n = 0
}

// AppendRequest appends an ExportTraceServiceRequest holding one ResourceSpans for r with the spans of b.
func AppendRequest(dst []byte, r *Resource, b *Batch) []byte {
	rs := 0
	dst, rs = begin(dst, 1) // ExportTraceServiceRequest.resource_spans
	res := 0
	dst, res = begin(dst, 1) // ResourceSpans.resource
	for i := range r.Attrs {
		dst = appendKeyValue(dst, 1, &r.Attrs[i]) // Resource.attributes
	}
	dst = end(dst, res)
	ss := 0
	dst, ss = begin(dst, 2) // ResourceSpans.scope_spans
	sc := 0
	dst, sc = begin(dst, 1) // ScopeSpans.scope
	dst = appendString(dst, 1, r.ScopeName)
	dst = appendString(dst, 2, r.ScopeVersion)
	dst = end(dst, sc)
	dst = append(dst, b.buf...) // ScopeSpans.spans
	dst = end(dst, ss)
	return end(dst, rs)
}

// appendSpan appends s as field 2 (ScopeSpans.spans).
func appendSpan(dst []byte, s *span.Span) []byte {
	start := 0
	dst, start = begin(dst, 2)
	dst = appendBytes(dst, 1, s.TraceID[:])
	dst = appendBytes(dst, 2, s.SpanID[:])
	dst = appendString(dst, 3, s.TraceState)
	if !s.ParentSpanID.IsZero() {
		dst = appendBytes(dst, 4, s.ParentSpanID[:])
	}
	dst = appendString(dst, 5, s.Name)
	if s.Kind != span.KindUnspecified {
		dst = appendVarintField(dst, 6, uint64(s.Kind))
	}
	dst = appendFixed64(dst, 7, s.StartUnixNano)
	dst = appendFixed64(dst, 8, s.EndUnixNano)
	for i := range s.Attrs {
		dst = appendKeyValue(dst, 9, &s.Attrs[i])
	}
	for i := range s.Links {
		dst = appendLink(dst, &s.Links[i])
	}
	if s.Status != span.StatusUnset || s.StatusMessage != "" {
		st := 0
		dst, st = begin(dst, 15)
		dst = appendString(dst, 2, s.StatusMessage)
		if s.Status != span.StatusUnset {
			dst = appendVarintField(dst, 3, uint64(s.Status))
		}
		dst = end(dst, st)
	}
	if s.Flags != 0 {
		dst = appendFixed32(dst, 16, s.Flags)
	}
	return end(dst, start)
}

// appendLink appends l as Span.links (field 13).
func appendLink(dst []byte, l *span.Link) []byte {
	start := 0
	dst, start = begin(dst, 13)
	dst = appendBytes(dst, 1, l.TraceID[:])
	dst = appendBytes(dst, 2, l.SpanID[:])
	dst = appendString(dst, 3, l.TraceState)
	for i := range l.Attrs {
		dst = appendKeyValue(dst, 4, &l.Attrs[i])
	}
	return end(dst, start)
}

// appendKeyValue appends a KeyValue message as field num. The sizes of both nested messages are known
// up front, so each length prefix is written before its body rather than moved in afterwards.
func appendKeyValue(dst []byte, num int, a *span.Attr) []byte {
	var value int // AnyValue body: its one field
	switch a.Type {
	case span.TypeInt:
		value = 1 + varintLen(uint64(a.Int))
	case span.TypeBool:
		value = 2
	default:
		value = 1 + varintLen(uint64(len(a.Str))) + len(a.Str)
	}
	kv := 1 + varintLen(uint64(value)) + value // KeyValue.value
	if a.Key != "" {
		kv += 1 + varintLen(uint64(len(a.Key))) + len(a.Key)
	}
	dst = appendTag(dst, num, wireBytes)
	dst = appendVarint(dst, uint64(kv))
	dst = appendString(dst, 1, a.Key)
	dst = appendTag(dst, 2, wireBytes) // KeyValue.value (AnyValue)
	dst = appendVarint(dst, uint64(value))
	switch a.Type {
	case span.TypeInt:
		return appendVarintField(dst, 3, uint64(a.Int))
	case span.TypeBool:
		b := uint64(0)
		if a.Bool {
			b = 1
		}
		return appendVarintField(dst, 2, b)
	}
	dst = appendTag(dst, 1, wireBytes) // string_value is a oneof member: written even when empty
	dst = appendVarint(dst, uint64(len(a.Str)))
	return append(dst, a.Str...)
}
