package flatten

import (
	"errors"
	"fmt"
	"math"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/meshtrace/meshtrace/indexer/document"
)

// FromProtobuf decodes a protobuf ExportTraceServiceRequest and flattens it in one pass over the wire format,
// without building the OTLP message tree. It appends to dst the same documents, and reports the same
// rejections, as proto.Unmarshal into the go.opentelemetry.io/proto/otlp types followed by Spans (protobuf
// merge rules included); FuzzFromProtobuf checks that against the generated code. It allocates a fraction of
// what the message tree needs: no wrapper per attribute value, names and keys interned per request.
//
// The error is for malformed protobuf (or invalid UTF-8 in a string it reads); fields it does not need are
// skipped without validation.
func FromProtobuf(dst []document.Span, b []byte) ([]document.Span, Rejected, error) {
	d := wireDecoder{intern: map[string]string{}}
	var rej Rejected
	for i := 0; len(b) > 0; {
		f, rest, err := nextField(b)
		if err != nil {
			return dst, rej, err
		}
		b = rest
		if f.num == 1 && f.typ == protowire.BytesType {
			if dst, err = d.resourceSpans(dst, f.buf, i, &rej); err != nil {
				return dst, rej, err
			}
			i++
		}
	}
	return dst, rej, nil
}

// maxWireDepth bounds the nesting of attribute values (arrays and key-value lists). Each level is two or three
// protobuf messages, so protobuf-go's default recursion limit (10,000 messages) is always reached first.
const maxWireDepth = 5000

var (
	errInvalidUTF8 = errors.New("string field contains invalid UTF-8")
	errTooDeep     = errors.New("exceeded maximum recursion depth")
)

// wireField is one field of a message on the wire: val holds varint and fixed values, buf length-delimited ones.
type wireField struct {
	num protowire.Number
	typ protowire.Type
	val uint64
	buf []byte
}

func nextField(b []byte) (wireField, []byte, error) {
	num, typ, n := protowire.ConsumeTag(b)
	if n < 0 {
		return wireField{}, nil, protowire.ParseError(n)
	}
	b = b[n:]
	f := wireField{num: num, typ: typ}
	switch typ {
	case protowire.VarintType:
		f.val, n = protowire.ConsumeVarint(b)
	case protowire.Fixed32Type:
		var v uint32
		v, n = protowire.ConsumeFixed32(b)
		f.val = uint64(v)
	case protowire.Fixed64Type:
		f.val, n = protowire.ConsumeFixed64(b)
	case protowire.BytesType:
		f.buf, n = protowire.ConsumeBytes(b)
	default:
		n = protowire.ConsumeFieldValue(num, typ, b)
	}
	if n < 0 {
		return wireField{}, nil, protowire.ParseError(n)
	}
	return f, b[n:], nil
}

// is reports whether f is field num with the wire type the schema gives it; protobuf treats a field with another
// wire type as unknown.
func (f wireField) is(num protowire.Number, typ protowire.Type) bool {
	return f.num == num && f.typ == typ
}

// appendRepeated appends to dst the occurrences of the length-delimited field num of message b, in order.
func appendRepeated(dst [][]byte, b []byte, num protowire.Number) ([][]byte, error) {
	for len(b) > 0 {
		f, rest, err := nextField(b)
		if err != nil {
			return dst, err
		}
		b = rest
		if f.is(num, protowire.BytesType) {
			dst = append(dst, f.buf)
		}
	}
	return dst, nil
}

type wireDecoder struct {
	intern map[string]string // low-cardinality strings (names, keys, services) of one request
	values map[string]any    // short string attribute values of one request, boxed once
	depth  int
	// Scratch lists of raw messages, reused from span to span.
	attrs, events, links, eventAttrs, linkAttrs [][]byte
}

// str returns b as a string, checking UTF-8 as protobuf does for proto3 strings; interned strings are shared.
func (d *wireDecoder) str(b []byte, intern bool) (string, error) {
	if !utf8.Valid(b) {
		return "", errInvalidUTF8
	}
	if !intern {
		return string(b), nil
	}
	if s, ok := d.intern[string(b)]; ok {
		return s, nil
	}
	s := string(b)
	d.intern[s] = s
	return s, nil
}

// maxSharedValue is the longest string attribute value shared between the documents of one request: short
// values (methods, hosts, routes, ids of a few services) repeat from span to span.
const maxSharedValue = 64

// stringValue returns b as a boxed string, sharing short values within the request.
func (d *wireDecoder) stringValue(b []byte) (any, error) {
	if len(b) > maxSharedValue {
		s, err := d.str(b, false)
		return s, err
	}
	if v, ok := d.values[string(b)]; ok {
		return v, nil
	}
	s, err := d.str(b, false)
	if err != nil {
		return nil, err
	}
	if d.values == nil {
		d.values = map[string]any{}
	}
	v := any(s)
	d.values[s] = v
	return v, nil
}

func (d *wireDecoder) resourceSpans(dst []document.Span, b []byte, i int, rej *Rejected) ([]document.Span, error) {
	var resources, scopeSpans [][]byte
	for len(b) > 0 {
		f, rest, err := nextField(b)
		if err != nil {
			return dst, err
		}
		b = rest
		switch {
		case f.is(1, protowire.BytesType):
			resources = append(resources, f.buf)
		case f.is(2, protowire.BytesType):
			scopeSpans = append(scopeSpans, f.buf)
		}
	}
	// Occurrences of the resource field merge: their attributes concatenate.
	attrs := d.attrs[:0]
	for _, r := range resources {
		var err error
		if attrs, err = appendRepeated(attrs, r, 1); err != nil {
			return dst, err
		}
	}
	d.attrs = attrs
	resource, err := d.attributes(attrs)
	if err != nil {
		return dst, err
	}
	service := UnknownService
	if s, ok := resource["service.name"].(string); ok && s != "" {
		service = s
	}
	for j, ss := range scopeSpans {
		scope, spans, err := d.scopeSpans(ss)
		if err != nil {
			return dst, err
		}
		for k, sp := range spans {
			doc, reason, err := d.span(sp)
			if err != nil {
				return dst, err
			}
			if reason != "" {
				rej.add(fmt.Sprintf("resourceSpans[%d].scopeSpans[%d].spans[%d]", i, j, k), reason)
				continue
			}
			doc.Service, doc.Resource, doc.Scope = service, resource, scope
			dst = append(dst, doc)
		}
	}
	return dst, nil
}

// scopeSpans returns the scope name (scope occurrences merge: the last name wins) and the raw spans.
func (d *wireDecoder) scopeSpans(b []byte) (scope string, spans [][]byte, err error) {
	for len(b) > 0 {
		f, rest, err := nextField(b)
		if err != nil {
			return "", nil, err
		}
		b = rest
		switch {
		case f.is(1, protowire.BytesType):
			for sb := f.buf; len(sb) > 0; {
				sf, rest, err := nextField(sb)
				if err != nil {
					return "", nil, err
				}
				sb = rest
				if sf.is(1, protowire.BytesType) {
					if scope, err = d.str(sf.buf, true); err != nil {
						return "", nil, err
					}
				}
			}
		case f.is(2, protowire.BytesType):
			spans = append(spans, f.buf)
		}
	}
	return scope, spans, nil
}

// wireSpan holds the fields of a span as read; repeated fields keep their raw messages.
type wireSpan struct {
	traceID, spanID, parentID []byte
	name                      string
	kind, statusCode          int32
	start, end                uint64
	statusMessage             string
	attrs, events, links      [][]byte
}

// span decodes one span; reason says why it is rejected, err that the bytes are malformed.
func (d *wireDecoder) span(b []byte) (doc document.Span, reason string, err error) {
	s := wireSpan{attrs: d.attrs[:0], events: d.events[:0], links: d.links[:0]}
	defer func() { d.attrs, d.events, d.links = s.attrs, s.events, s.links }()
	for len(b) > 0 {
		f, rest, err := nextField(b)
		if err != nil {
			return doc, "", err
		}
		b = rest
		switch {
		case f.is(1, protowire.BytesType):
			s.traceID = f.buf
		case f.is(2, protowire.BytesType):
			s.spanID = f.buf
		case f.is(3, protowire.BytesType): // trace_state
			_, err = d.str(f.buf, false)
		case f.is(4, protowire.BytesType):
			s.parentID = f.buf
		case f.is(5, protowire.BytesType):
			s.name, err = d.str(f.buf, true)
		case f.is(6, protowire.VarintType):
			s.kind = int32(f.val)
		case f.is(7, protowire.Fixed64Type):
			s.start = f.val
		case f.is(8, protowire.Fixed64Type):
			s.end = f.val
		case f.is(9, protowire.BytesType):
			s.attrs = append(s.attrs, f.buf)
		case f.is(11, protowire.BytesType):
			s.events = append(s.events, f.buf)
		case f.is(13, protowire.BytesType):
			s.links = append(s.links, f.buf)
		case f.is(15, protowire.BytesType): // status; occurrences merge
			err = d.status(&s, f.buf)
		}
		if err != nil {
			return doc, "", err
		}
	}
	type linkIDs struct{ traceID, spanID []byte }
	links := make([]linkIDs, len(s.links))
	for i, l := range s.links {
		for len(l) > 0 {
			f, rest, err := nextField(l)
			if err != nil {
				return doc, "", err
			}
			l = rest
			switch {
			case f.is(1, protowire.BytesType):
				links[i].traceID = f.buf
			case f.is(2, protowire.BytesType):
				links[i].spanID = f.buf
			case f.is(3, protowire.BytesType):
				if _, err := d.str(f.buf, false); err != nil {
					return doc, "", err
				}
			}
		}
	}
	if reason := checkSpan(s.traceID, s.spanID, s.parentID, s.start, s.end); reason != "" {
		return doc, reason, d.checkRest(s)
	}
	for i, l := range links {
		if reason := checkLink(i, l.traceID, l.spanID); reason != "" {
			return doc, reason, d.checkRest(s)
		}
	}
	doc = newSpan(s.traceID, s.spanID, s.parentID, s.name, s.kind, s.start, s.end, s.statusCode, s.statusMessage)
	if doc.Attr, err = d.attributes(s.attrs); err != nil {
		return doc, "", err
	}
	if len(s.links) > 0 {
		doc.Links = make([]document.Link, len(s.links))
		for i, l := range s.links {
			attrs, err := d.linkAttributes(l)
			if err != nil {
				return doc, "", err
			}
			doc.Links[i] = newLink(links[i].traceID, links[i].spanID, attrs)
		}
	}
	if len(s.events) > 0 {
		doc.Events = make([]document.Event, len(s.events))
		for i, e := range s.events {
			if doc.Events[i], err = d.event(e); err != nil {
				return doc, "", err
			}
		}
	}
	return doc, "", nil
}

func (d *wireDecoder) status(s *wireSpan, b []byte) error {
	for len(b) > 0 {
		f, rest, err := nextField(b)
		if err != nil {
			return err
		}
		b = rest
		switch {
		case f.is(2, protowire.BytesType):
			if s.statusMessage, err = d.str(f.buf, false); err != nil {
				return err
			}
		case f.is(3, protowire.VarintType):
			s.statusCode = int32(f.val)
		}
	}
	return nil
}

// checkRest decodes what a rejected span did not need, so that malformed bytes are an error whether or not
// the span is rejected, as with proto.Unmarshal.
func (d *wireDecoder) checkRest(s wireSpan) error {
	if _, err := d.attributes(s.attrs); err != nil {
		return err
	}
	for _, l := range s.links {
		if _, err := d.linkAttributes(l); err != nil {
			return err
		}
	}
	for _, e := range s.events {
		if _, err := d.event(e); err != nil {
			return err
		}
	}
	return nil
}

func (d *wireDecoder) event(b []byte) (document.Event, error) {
	var e document.Event
	attrs := d.eventAttrs[:0]
	defer func() { d.eventAttrs = attrs }()
	for len(b) > 0 {
		f, rest, err := nextField(b)
		if err != nil {
			return e, err
		}
		b = rest
		switch {
		case f.is(1, protowire.Fixed64Type):
			e.Time = int64(f.val / 1000)
		case f.is(2, protowire.BytesType):
			if e.Name, err = d.str(f.buf, true); err != nil {
				return e, err
			}
		case f.is(3, protowire.BytesType):
			attrs = append(attrs, f.buf)
		}
	}
	var err error
	e.Attr, err = d.attributes(attrs)
	return e, err
}

// linkAttributes flattens the attributes (field 4) of a raw link.
func (d *wireDecoder) linkAttributes(b []byte) (map[string]any, error) {
	attrs, err := appendRepeated(d.linkAttrs[:0], b, 4)
	d.linkAttrs = attrs
	if err != nil {
		return nil, err
	}
	return d.attributes(attrs)
}

// attributes flattens KeyValue messages as Attributes does: nil when there are none.
func (d *wireDecoder) attributes(kvs [][]byte) (map[string]any, error) {
	if len(kvs) == 0 {
		return nil, nil
	}
	m := make(map[string]any, len(kvs))
	for _, kv := range kvs {
		if err := d.keyValue(m, "", kv); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// anyValue is an AnyValue as read so far. Occurrences of an AnyValue field merge, as in protobuf: a scalar
// replaces the value, an array or key-value list extends one of the same kind and replaces anything else.
type anyValue struct {
	kind   int // valNone, valScalar, valArray or valKVList
	scalar any
	parts  [][]byte // raw AnyValue elements of an array, raw KeyValue entries of a key-value list
}

const (
	valNone = iota
	valScalar
	valArray
	valKVList
)

// keyValue flattens one KeyValue message into m under prefix, as flattenInto does.
func (d *wireDecoder) keyValue(m map[string]any, prefix string, b []byte) error {
	if d.depth++; d.depth > maxWireDepth {
		return errTooDeep
	}
	defer func() { d.depth-- }()
	var key string
	var v anyValue
	for len(b) > 0 {
		f, rest, err := nextField(b)
		if err != nil {
			return err
		}
		b = rest
		switch {
		case f.is(1, protowire.BytesType):
			key, err = d.str(f.buf, true)
		case f.is(2, protowire.BytesType):
			err = d.anyValue(&v, f.buf)
		}
		if err != nil {
			return err
		}
	}
	if key == "" {
		return nil
	}
	if v.kind == valKVList {
		for _, kv := range v.parts {
			if err := d.keyValue(m, prefix+key+".", kv); err != nil {
				return err
			}
		}
		return nil
	}
	val, err := d.value(&v)
	if err == nil && val != nil {
		if prefix != "" {
			key = prefix + key
		}
		m[key] = val
	}
	return err
}

func (d *wireDecoder) anyValue(v *anyValue, b []byte) error {
	for len(b) > 0 {
		f, rest, err := nextField(b)
		if err != nil {
			return err
		}
		b = rest
		switch {
		case f.is(1, protowire.BytesType):
			s, err := d.stringValue(f.buf)
			if err != nil {
				return err
			}
			*v = anyValue{kind: valScalar, scalar: s}
		case f.is(2, protowire.VarintType):
			*v = anyValue{kind: valScalar, scalar: f.val != 0}
		case f.is(3, protowire.VarintType):
			*v = anyValue{kind: valScalar, scalar: intValue(int64(f.val))}
		case f.is(4, protowire.Fixed64Type):
			*v = anyValue{kind: valScalar, scalar: doubleValue(math.Float64frombits(f.val))}
		case f.is(5, protowire.BytesType):
			err = d.parts(v, valArray, f.buf)
		case f.is(6, protowire.BytesType):
			err = d.parts(v, valKVList, f.buf)
		case f.is(7, protowire.BytesType):
			*v = anyValue{kind: valScalar, scalar: bytesValue(f.buf)}
		case f.is(8, protowire.VarintType): // string_value_strindex: no value without a dictionary
			*v = anyValue{}
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// parts reads an ArrayValue or KeyValueList message (both: repeated field 1) into v.
func (d *wireDecoder) parts(v *anyValue, kind int, b []byte) (err error) {
	if v.kind != kind {
		*v = anyValue{kind: kind}
	}
	v.parts, err = appendRepeated(v.parts, b, 1)
	return err
}

// element converts one raw AnyValue element of an array, one nesting level down.
func (d *wireDecoder) element(b []byte) (any, error) {
	if d.depth++; d.depth > maxWireDepth {
		return nil, errTooDeep
	}
	defer func() { d.depth-- }()
	var v anyValue
	if err := d.anyValue(&v, b); err != nil {
		return nil, err
	}
	return d.value(&v)
}

// value converts v as Value does.
func (d *wireDecoder) value(v *anyValue) (any, error) {
	switch v.kind {
	case valScalar:
		return v.scalar, nil
	case valArray:
		out := make([]any, 0, len(v.parts))
		for _, p := range v.parts {
			ev, err := d.element(p)
			if err != nil {
				return nil, err
			}
			if ev != nil {
				out = append(out, ev)
			}
		}
		return out, nil
	case valKVList:
		m := make(map[string]any, len(v.parts))
		for _, kv := range v.parts {
			if err := d.keyValue(m, "", kv); err != nil {
				return nil, err
			}
		}
		return m, nil
	}
	return nil, nil
}
