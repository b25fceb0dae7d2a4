// Package otlpjson decodes the OTLP/JSON encoding of trace export requests (lowerCamelCase field names, hex
// trace and span ids, 64-bit integers as strings or numbers, enums as integers) into the protobuf types of
// go.opentelemetry.io/proto/otlp, with fastjson and without reflection.
//
// The decoder is strict about structure (a field of the wrong JSON type is an error naming its path) and lenient
// where the protobuf JSON mapping is: snake_case field names and enum names are accepted too, and unknown fields
// are ignored, as the OTLP specification requires. An id that is not valid hex is not a decode error: it is
// decoded to a one-byte id, an impossible length, so that the span is rejected individually (partial success).
//
// What decoding allocates is bounded whatever the body holds: a first pass, which allocates nothing, refuses
// bodies nested deeper than MaxNesting or holding more than Decoder.MaxTokens JSON tokens.
package otlpjson

import (
	"errors"
	"fmt"
	"math"
	"strings"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/valyala/fastjson"
)

// maxDepth bounds the nesting of AnyValue arrays and key-value lists: more than flatten's default MaxDepth (8),
// so that flatten refuses what is too deep with its LimitError, and few enough to fit in MaxNesting.
const maxDepth = 12

// MaxNesting is the deepest nesting of JSON objects and arrays a request may have; what is deeper is refused
// before it is parsed. The OTLP structure takes 12 levels down to the value of an event attribute and 4 per
// level of key-value list below it, so MaxNesting holds the 12 levels of AnyValue the decoder accepts.
const MaxNesting = 64

// DefaultMaxTokens is the default of Decoder.MaxTokens. Decoding allocates up to about 500 bytes per token
// (the parser's value cache grows by copying, and every generation of it stays referenced during a parse; then
// the OTLP messages), so this bounds a decode to about 256 MiB whatever the body holds, where a 16 MiB flood of
// tiny values ("[0,0,0,...", "{},{},...") took over 4 GB. Compact OTLP/JSON holds one token per 10 bytes or
// more (the specification's example: 58 in 571 bytes), so this admits such bodies up to about 5 MB: ten SDK
// batches of 512 spans. Larger JSON requests are refused with an Error whose TooLarge is set.
const DefaultMaxTokens = 1 << 19

// retainTokens is the largest parse a Decoder keeps its parser's memory for, to reuse on the next call.
const retainTokens = 1 << 16

// Decoder decodes OTLP/JSON trace export requests. The zero value is ready to use. A Decoder reuses its parser
// buffers between calls and is not safe for concurrent use; pool Decoders for concurrent decoding.
//
// Memory: decoding allocates per JSON token, not per body byte (see DefaultMaxTokens), so a body is first
// scanned, without allocating, for its nesting (at most MaxNesting) and its number of tokens (at most
// MaxTokens): what decoding allocates is then bounded whatever the body holds. The limits of flatten.Limits
// apply once the request is decoded.
type Decoder struct {
	// MaxTokens bounds the structural tokens of a body (each '{', '[', ',' and ':' outside strings): about
	// the number of values and object members. Zero means DefaultMaxTokens; negative, no limit.
	MaxTokens int
	p         fastjson.Parser
}

// Error is a decode error: the JSON path of the offending value and what is wrong with it.
type Error struct {
	Path string
	Msg  string
	// TooLarge is set when the body holds more tokens than Decoder.MaxTokens: the same spans in smaller
	// requests would be accepted, so receivers may answer 413 rather than 400.
	TooLarge bool
}

// Error renders the error as "path: message".
func (e *Error) Error() string {
	if e.Path == "" {
		return e.Msg
	}
	return e.Path + ": " + e.Msg
}

// Decode parses an OTLP/JSON ExportTraceServiceRequest.
func (d *Decoder) Decode(data []byte) (*coltracepb.ExportTraceServiceRequest, error) {
	maxTokens := d.MaxTokens
	switch {
	case maxTokens == 0:
		maxTokens = DefaultMaxTokens
	case maxTokens < 0:
		maxTokens = math.MaxInt
	}
	tokens, err := scan(data, maxTokens)
	if err != nil {
		return nil, err
	}
	if tokens > retainTokens {
		defer func() { d.p = fastjson.Parser{} }() // the request holds copies, nothing of the parser
	}
	v, err := d.p.ParseBytes(data)
	if err != nil {
		msg := err.Error()
		if len(msg) > maxParseError {
			msg = msg[:maxParseError] + "..."
		}
		return nil, &Error{Msg: "invalid JSON: " + strings.ToValidUTF8(msg, "")}
	}
	req := &coltracepb.ExportTraceServiceRequest{}
	err = fields(v, func(k []byte, v *fastjson.Value) (err error) {
		switch string(k) {
		case "resourceSpans", "resource_spans":
			req.ResourceSpans, err = decodeList(v, decodeResourceSpans)
		}
		return err
	})
	if err != nil {
		var e *Error
		if errors.As(err, &e) {
			e.Path = strings.TrimPrefix(e.Path, ".")
		}
		return nil, err
	}
	return req, nil
}

// maxParseError bounds the parser's error messages, which chain one clause per level of nesting.
const maxParseError = 256

// scan checks the nesting of data and counts its structural tokens, in one pass that allocates nothing and
// does not validate: the parser does that next.
func scan(data []byte, maxTokens int) (int, error) {
	tokens, depth := 0, 0
	for i := 0; i < len(data); i++ {
		switch data[i] {
		case '"':
			for i++; i < len(data) && data[i] != '"'; i++ {
				if data[i] == '\\' {
					i++
				}
			}
		case '{', '[':
			if depth++; depth > MaxNesting {
				return 0, &Error{Msg: fmt.Sprintf("JSON nested deeper than %d levels (at byte %d)", MaxNesting, i)}
			}
			tokens++
		case '}', ']':
			depth--
		case ',', ':':
			tokens++
		}
		if tokens > maxTokens {
			return 0, &Error{Msg: fmt.Sprintf("more than %d JSON tokens (at byte %d): send smaller requests", maxTokens, i), TooLarge: true}
		}
	}
	return tokens, nil
}

func decodeResourceSpans(v *fastjson.Value) (*tracepb.ResourceSpans, error) {
	rs := &tracepb.ResourceSpans{}
	err := fields(v, func(k []byte, v *fastjson.Value) (err error) {
		switch string(k) {
		case "resource":
			rs.Resource, err = decodeResource(v)
		case "scopeSpans", "scope_spans":
			rs.ScopeSpans, err = decodeList(v, decodeScopeSpans)
		case "schemaUrl", "schema_url":
			rs.SchemaUrl, err = str(v)
		}
		return err
	})
	return rs, err
}

func decodeResource(v *fastjson.Value) (*resourcepb.Resource, error) {
	r := &resourcepb.Resource{}
	err := fields(v, func(k []byte, v *fastjson.Value) (err error) {
		switch string(k) {
		case "attributes":
			r.Attributes, err = decodeAttributes(v, 0)
		case "droppedAttributesCount", "dropped_attributes_count":
			r.DroppedAttributesCount, err = uint32Of(v)
		}
		return err
	})
	return r, err
}

func decodeScopeSpans(v *fastjson.Value) (*tracepb.ScopeSpans, error) {
	ss := &tracepb.ScopeSpans{}
	err := fields(v, func(k []byte, v *fastjson.Value) (err error) {
		switch string(k) {
		case "scope":
			ss.Scope, err = decodeScope(v)
		case "spans":
			ss.Spans, err = decodeList(v, decodeSpan)
		case "schemaUrl", "schema_url":
			ss.SchemaUrl, err = str(v)
		}
		return err
	})
	return ss, err
}

func decodeScope(v *fastjson.Value) (*commonpb.InstrumentationScope, error) {
	s := &commonpb.InstrumentationScope{}
	err := fields(v, func(k []byte, v *fastjson.Value) (err error) {
		switch string(k) {
		case "name":
			s.Name, err = str(v)
		case "version":
			s.Version, err = str(v)
		case "attributes":
			s.Attributes, err = decodeAttributes(v, 0)
		case "droppedAttributesCount", "dropped_attributes_count":
			s.DroppedAttributesCount, err = uint32Of(v)
		}
		return err
	})
	return s, err
}

func decodeSpan(v *fastjson.Value) (*tracepb.Span, error) {
	s := &tracepb.Span{}
	err := fields(v, func(k []byte, v *fastjson.Value) (err error) {
		switch string(k) {
		case "traceId", "trace_id":
			s.TraceId, err = id(v)
		case "spanId", "span_id":
			s.SpanId, err = id(v)
		case "parentSpanId", "parent_span_id":
			s.ParentSpanId, err = id(v)
		case "traceState", "trace_state":
			s.TraceState, err = str(v)
		case "flags":
			s.Flags, err = uint32Of(v)
		case "name":
			s.Name, err = str(v)
		case "kind":
			var n int32
			n, err = enum(v, tracepb.Span_SpanKind_value)
			s.Kind = tracepb.Span_SpanKind(n)
		case "startTimeUnixNano", "start_time_unix_nano":
			s.StartTimeUnixNano, err = uint64Of(v)
		case "endTimeUnixNano", "end_time_unix_nano":
			s.EndTimeUnixNano, err = uint64Of(v)
		case "attributes":
			s.Attributes, err = decodeAttributes(v, 0)
		case "droppedAttributesCount", "dropped_attributes_count":
			s.DroppedAttributesCount, err = uint32Of(v)
		case "events":
			s.Events, err = decodeList(v, decodeEvent)
		case "droppedEventsCount", "dropped_events_count":
			s.DroppedEventsCount, err = uint32Of(v)
		case "links":
			s.Links, err = decodeList(v, decodeLink)
		case "droppedLinksCount", "dropped_links_count":
			s.DroppedLinksCount, err = uint32Of(v)
		case "status":
			s.Status, err = decodeStatus(v)
		}
		return err
	})
	return s, err
}

func decodeEvent(v *fastjson.Value) (*tracepb.Span_Event, error) {
	e := &tracepb.Span_Event{}
	err := fields(v, func(k []byte, v *fastjson.Value) (err error) {
		switch string(k) {
		case "timeUnixNano", "time_unix_nano":
			e.TimeUnixNano, err = uint64Of(v)
		case "name":
			e.Name, err = str(v)
		case "attributes":
			e.Attributes, err = decodeAttributes(v, 0)
		case "droppedAttributesCount", "dropped_attributes_count":
			e.DroppedAttributesCount, err = uint32Of(v)
		}
		return err
	})
	return e, err
}

func decodeLink(v *fastjson.Value) (*tracepb.Span_Link, error) {
	l := &tracepb.Span_Link{}
	err := fields(v, func(k []byte, v *fastjson.Value) (err error) {
		switch string(k) {
		case "traceId", "trace_id":
			l.TraceId, err = id(v)
		case "spanId", "span_id":
			l.SpanId, err = id(v)
		case "traceState", "trace_state":
			l.TraceState, err = str(v)
		case "attributes":
			l.Attributes, err = decodeAttributes(v, 0)
		case "droppedAttributesCount", "dropped_attributes_count":
			l.DroppedAttributesCount, err = uint32Of(v)
		case "flags":
			l.Flags, err = uint32Of(v)
		}
		return err
	})
	return l, err
}

func decodeStatus(v *fastjson.Value) (*tracepb.Status, error) {
	s := &tracepb.Status{}
	err := fields(v, func(k []byte, v *fastjson.Value) (err error) {
		switch string(k) {
		case "message":
			s.Message, err = str(v)
		case "code":
			var n int32
			n, err = enum(v, tracepb.Status_StatusCode_value)
			s.Code = tracepb.Status_StatusCode(n)
		}
		return err
	})
	return s, err
}

func decodeAttributes(v *fastjson.Value, depth int) ([]*commonpb.KeyValue, error) {
	return decodeList(v, func(v *fastjson.Value) (*commonpb.KeyValue, error) {
		return decodeKeyValue(v, depth)
	})
}

func decodeKeyValue(v *fastjson.Value, depth int) (*commonpb.KeyValue, error) {
	kv := &commonpb.KeyValue{}
	err := fields(v, func(k []byte, v *fastjson.Value) (err error) {
		switch string(k) {
		case "key":
			kv.Key, err = str(v)
		case "value":
			kv.Value, err = decodeAnyValue(v, depth)
		}
		return err
	})
	return kv, err
}

func decodeAnyValue(v *fastjson.Value, depth int) (*commonpb.AnyValue, error) {
	if depth >= maxDepth {
		return nil, &Error{Msg: fmt.Sprintf("nested deeper than %d levels", maxDepth)}
	}
	av := &commonpb.AnyValue{}
	err := fields(v, func(k []byte, v *fastjson.Value) (err error) {
		switch string(k) {
		case "stringValue", "string_value":
			var s string
			s, err = str(v)
			av.Value = &commonpb.AnyValue_StringValue{StringValue: s}
		case "boolValue", "bool_value":
			var b bool
			b, err = boolOf(v)
			av.Value = &commonpb.AnyValue_BoolValue{BoolValue: b}
		case "intValue", "int_value":
			var n int64
			n, err = int64Of(v)
			av.Value = &commonpb.AnyValue_IntValue{IntValue: n}
		case "doubleValue", "double_value":
			var f float64
			f, err = float64Of(v)
			av.Value = &commonpb.AnyValue_DoubleValue{DoubleValue: f}
		case "bytesValue", "bytes_value":
			var b []byte
			b, err = bytesOf(v)
			av.Value = &commonpb.AnyValue_BytesValue{BytesValue: b}
		case "arrayValue", "array_value":
			var arr *commonpb.ArrayValue
			arr, err = decodeArrayValue(v, depth+1)
			av.Value = &commonpb.AnyValue_ArrayValue{ArrayValue: arr}
		case "kvlistValue", "kvlist_value":
			var kvl *commonpb.KeyValueList
			kvl, err = decodeKeyValueList(v, depth+1)
			av.Value = &commonpb.AnyValue_KvlistValue{KvlistValue: kvl}
		}
		return err
	})
	return av, err
}

func decodeArrayValue(v *fastjson.Value, depth int) (*commonpb.ArrayValue, error) {
	obj, err := object(v)
	if err != nil {
		return nil, err
	}
	arr := &commonpb.ArrayValue{}
	if vals := obj.Get("values"); vals != nil {
		arr.Values, err = decodeList(vals, func(v *fastjson.Value) (*commonpb.AnyValue, error) {
			return decodeAnyValue(v, depth)
		})
	}
	return arr, at(err, []byte("values"))
}

func decodeKeyValueList(v *fastjson.Value, depth int) (*commonpb.KeyValueList, error) {
	obj, err := object(v)
	if err != nil {
		return nil, err
	}
	kvl := &commonpb.KeyValueList{}
	if vals := obj.Get("values"); vals != nil {
		kvl.Values, err = decodeAttributes(vals, depth)
	}
	return kvl, at(err, []byte("values"))
}
