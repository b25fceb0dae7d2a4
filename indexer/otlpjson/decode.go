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
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strconv"
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

// decodeList decodes a JSON array (or null) with one element decoder; element paths get an [i] suffix.
func decodeList[T any](v *fastjson.Value, elem func(*fastjson.Value) (T, error)) ([]T, error) {
	if v.Type() == fastjson.TypeNull {
		return nil, nil
	}
	items, err := v.Array()
	if err != nil {
		return nil, &Error{Msg: "expected an array, got " + v.Type().String()}
	}
	out := make([]T, 0, len(items))
	for i, item := range items {
		e, err := elem(item)
		if err != nil {
			return nil, atIndex(err, i)
		}
		out = append(out, e)
	}
	return out, nil
}

// fields decodes the members of a JSON object in order with field, stopping at the first error, which gets the
// failing member's name prefixed to its path. Unknown members are for field to ignore. The key is only valid
// during the call.
func fields(v *fastjson.Value, field func(k []byte, v *fastjson.Value) error) error {
	obj, err := object(v)
	if err != nil {
		return err
	}
	obj.Visit(func(k []byte, v *fastjson.Value) {
		if err == nil {
			err = at(field(k, v), k)
		}
	})
	return err
}

// at prefixes the path of a decode error with a field name. Paths are built only on failure, so decoding valid
// input concatenates no strings.
func at(err error, field []byte) error {
	var e *Error
	if err != nil && errors.As(err, &e) {
		e.Path = "." + string(field) + e.Path
	}
	return err
}

// atIndex prefixes the path of a decode error with a list index.
func atIndex(err error, i int) error {
	var e *Error
	if errors.As(err, &e) {
		e.Path = "[" + strconv.Itoa(i) + "]" + e.Path
	}
	return err
}

func object(v *fastjson.Value) (*fastjson.Object, error) {
	obj, err := v.Object()
	if err != nil {
		return nil, &Error{Msg: "expected an object, got " + v.Type().String()}
	}
	return obj, nil
}

func str(v *fastjson.Value) (string, error) {
	if v.Type() == fastjson.TypeNull {
		return "", nil
	}
	b, err := v.StringBytes()
	if err != nil {
		return "", &Error{Msg: "expected a string, got " + v.Type().String()}
	}
	return string(b), nil
}

func boolOf(v *fastjson.Value) (bool, error) {
	switch v.Type() {
	case fastjson.TypeTrue:
		return true, nil
	case fastjson.TypeFalse, fastjson.TypeNull:
		return false, nil
	}
	return false, &Error{Msg: "expected a boolean, got " + v.Type().String()}
}

// id decodes a hex trace or span id. Invalid hex yields a one-byte id: no id has that length, so the span carrying
// it is rejected later on its own instead of failing the whole request.
func id(v *fastjson.Value) ([]byte, error) {
	s, err := str(v)
	if err != nil || s == "" {
		return nil, err
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return []byte{0}, nil
	}
	return b, nil
}

func bytesOf(v *fastjson.Value) ([]byte, error) {
	s, err := str(v)
	if err != nil {
		return nil, err
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			return b, nil
		}
	}
	return nil, &Error{Msg: "invalid base64"}
}

// numberText returns the text of a JSON number, or of a string holding one (the protobuf JSON mapping allows both
// for 64-bit integers).
func numberText(v *fastjson.Value, what string) (string, bool, error) {
	switch v.Type() {
	case fastjson.TypeNumber:
		return v.String(), true, nil
	case fastjson.TypeString:
		b, _ := v.StringBytes()
		return string(b), false, nil
	case fastjson.TypeNull:
		return "0", true, nil
	}
	return "", false, &Error{Msg: "expected " + what + ", got " + v.Type().String()}
}

func uint64Of(v *fastjson.Value) (uint64, error) {
	s, _, err := numberText(v, "an unsigned integer")
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, &Error{Msg: fmt.Sprintf("invalid unsigned integer %q", s)}
	}
	return n, nil
}

func uint32Of(v *fastjson.Value) (uint32, error) {
	s, _, err := numberText(v, "an unsigned integer")
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, &Error{Msg: fmt.Sprintf("invalid 32-bit unsigned integer %q", s)}
	}
	return uint32(n), nil
}

func int64Of(v *fastjson.Value) (int64, error) {
	s, _, err := numberText(v, "an integer")
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, &Error{Msg: fmt.Sprintf("invalid integer %q", s)}
	}
	return n, nil
}

func float64Of(v *fastjson.Value) (float64, error) {
	s, isNumber, err := numberText(v, "a number")
	if err != nil {
		return 0, err
	}
	if !isNumber {
		switch s {
		case "NaN":
			return math.NaN(), nil
		case "Infinity":
			return math.Inf(1), nil
		case "-Infinity":
			return math.Inf(-1), nil
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, &Error{Msg: fmt.Sprintf("invalid number %q", s)}
	}
	return f, nil
}

// enum decodes an enum given as an integer (the OTLP/JSON rule) or by its protobuf name.
func enum(v *fastjson.Value, names map[string]int32) (int32, error) {
	if v.Type() == fastjson.TypeString {
		b, _ := v.StringBytes()
		if n, ok := names[string(b)]; ok {
			return n, nil
		}
		if n, err := strconv.ParseInt(string(b), 10, 32); err == nil {
			return int32(n), nil
		}
		return 0, &Error{Msg: fmt.Sprintf("unknown enum value %q", strings.TrimSpace(string(b)))}
	}
	if v.Type() == fastjson.TypeNull {
		return 0, nil
	}
	n, err := v.Int()
	if err != nil || n < math.MinInt32 || n > math.MaxInt32 {
		return 0, &Error{Msg: "expected an enum integer, got " + v.String()}
	}
	return int32(n), nil
}
