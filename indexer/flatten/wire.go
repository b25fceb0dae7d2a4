package flatten

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"unsafe"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/meshtrace/meshtrace/indexer/document"
)

// FromProtobuf decodes a protobuf ExportTraceServiceRequest and flattens it in one pass over the wire format,
// without building the OTLP message tree. It appends to dst the same documents, and reports the same
// rejections, as proto.Unmarshal into the go.opentelemetry.io/proto/otlp types followed by Spans (protobuf
// merge rules included); FuzzFromProtobuf checks that against the generated code. It allocates a fraction of
// what the message tree needs: no wrapper per attribute value, names and keys interned per request.
//
// It refuses a request exceeding lim with the *LimitError Spans would return for it, checked before building
// what the limit bounds: an oversized key or value is refused without being copied, and no slice or map is
// sized from a count the input claims. Spans are counted first, in a pass that allocates nothing.
//
// Any other error is for malformed protobuf (or invalid UTF-8 in a string it reads); fields it does not need are
// skipped without validation. On an error, dst is returned as it was passed.
func FromProtobuf(dst []document.Span, b []byte, lim Limits) ([]document.Span, Rejected, error) {
	d := getDecoder(lim)
	defer d.release()
	n, err := countSpans(b)
	if err != nil {
		return dst, Rejected{}, err
	}
	if err := d.c.spans(n); err != nil {
		return dst, Rejected{}, err
	}
	d.room = min(n, len(b)/minWireSpan)
	orig := len(dst)
	var rej Rejected
	for i := 0; len(b) > 0; {
		var f wireField
		rest, err := nextField(b, &f)
		if err != nil {
			return dst[:orig], Rejected{}, err
		}
		b = rest
		if f.is(1, protowire.BytesType) {
			if dst, err = d.resourceSpans(dst, f.buf, i, &rej); err != nil {
				return dst[:orig], Rejected{}, err
			}
			i++
		}
	}
	return dst, rej, nil
}

// Validate checks a protobuf ExportTraceServiceRequest exactly as FromProtobuf does, with the same limits,
// rejections and errors, but builds no documents: it returns how many spans FromProtobuf would turn into
// documents. Receivers use it to answer a request before logging it, at a fraction of the allocation.
func Validate(b []byte, lim Limits) (valid int, rej Rejected, err error) {
	// No maps: a validating walk interns nothing (see str) and builds no values.
	d := wireDecoder{c: checker{lim: lim.resolve()}, validate: true}
	n, err := countSpans(b)
	if err != nil {
		return 0, Rejected{}, err
	}
	if err := d.c.spans(n); err != nil {
		return 0, Rejected{}, err
	}
	for i := 0; len(b) > 0; {
		var f wireField
		rest, err := nextField(b, &f)
		if err != nil {
			return 0, Rejected{}, err
		}
		b = rest
		if f.is(1, protowire.BytesType) {
			if _, err = d.resourceSpans(nil, f.buf, i, &rej); err != nil {
				return 0, Rejected{}, err
			}
			i++
		}
	}
	return d.valid, rej, nil
}

// countSpans counts the spans of a request (valid or not) without allocating.
func countSpans(b []byte) (int, error) {
	n := 0
	err := forEach(b, 1, func(rs []byte) error {
		return forEach(rs, 2, func(ss []byte) error {
			return forEach(ss, 2, func([]byte) error { n++; return nil })
		})
	})
	return n, err
}

// maxWireDepth bounds the nesting of attribute values (arrays and key-value lists). Each level is two or three
// protobuf messages, so protobuf-go's default recursion limit (10,000 messages) is always reached first.
const maxWireDepth = 5000

var (
	errInvalidUTF8 = errors.New("string field contains invalid UTF-8")
	errTooDeep     = errors.New("exceeded maximum recursion depth")
)

type wireDecoder struct {
	c      checker
	intern map[string]string // low-cardinality strings (names, keys, services) of one request
	values map[string]any    // short string attribute values of one request, boxed once
	// Scratch lists of raw messages, reused from span to span; none holds more entries than its limit.
	attrs, events, links, eventAttrs, linkAttrs [][]byte
	// validate makes the walk check everything and build nothing (Validate); valid counts the spans that
	// would have become documents.
	validate bool
	valid    int
	envoy    envoyResources // Envoy spans' derived resources, for the current ResourceSpans
	room     int            // documents to make room for at the first valid span; 0 once done
	// While bySlot is set (the top-level attributes of spans), slot is the position of the pair being read in
	// its set, and keySlots and valueSlots hold the key and the shared value last read at each position: a
	// pair equal to the one before it at its position takes them without a map lookup.
	bySlot     bool
	slot       int
	keySlots   []string
	valueSlots []slotValue
}

// slotValue is the shared string value (see stringValue) or the integer value last read at one position of
// span attributes, boxed.
type slotValue struct {
	s     string
	n     int64
	isInt bool
	v     any
}

// maxSlots bounds the positions that keySlots and valueSlots remember.
const maxSlots = 64

// keyAt returns key b, as str does, read at depth of an attribute set.
func (d *wireDecoder) keyAt(b []byte, depth int) string {
	if !d.bySlot || depth != 0 || d.slot >= maxSlots {
		return d.str(b)
	}
	if d.slot < len(d.keySlots) && d.keySlots[d.slot] == string(b) {
		return d.keySlots[d.slot]
	}
	k := d.str(b)
	for len(d.keySlots) <= d.slot {
		d.keySlots = append(d.keySlots, "")
	}
	d.keySlots[d.slot] = k
	return k
}

// stringValueAt returns string value b, as stringValue does, read at depth of an attribute set.
func (d *wireDecoder) stringValueAt(b []byte, depth int) any {
	if !d.bySlot || depth != 0 || d.slot >= maxSlots || len(b) > maxSharedValue {
		return d.stringValue(b)
	}
	if d.slot < len(d.valueSlots) {
		if sv := &d.valueSlots[d.slot]; sv.v != nil && !sv.isInt && sv.s == string(b) {
			return sv.v
		}
	}
	v := d.stringValue(b)
	d.setSlot(slotValue{s: v.(string), v: v})
	return v
}

// intValueAt returns integer n boxed as intValue does, read at depth of an attribute set; a span repeating the
// integer of the span before it at its position shares its box.
func (d *wireDecoder) intValueAt(n int64, depth int) any {
	if !d.bySlot || depth != 0 || d.slot >= maxSlots || n >= 0 && n < 256 { // the runtime boxes 0-255 for free
		return intValue(n)
	}
	if d.slot < len(d.valueSlots) {
		if sv := &d.valueSlots[d.slot]; sv.v != nil && sv.isInt && sv.n == n {
			return sv.v
		}
	}
	v := intValue(n)
	d.setSlot(slotValue{n: n, isInt: true, v: v})
	return v
}

// setSlot remembers sv as the value at the current position.
func (d *wireDecoder) setSlot(sv slotValue) {
	for len(d.valueSlots) <= d.slot {
		d.valueSlots = append(d.valueSlots, slotValue{})
	}
	d.valueSlots[d.slot] = sv
}

// minWireSpan is the fewest bytes a span that becomes a document takes in a request: a trace id (2+16), a span
// id (2+8) and a start time (1+8). Room for documents is made for at most len(body)/minWireSpan of them, so
// that it stays proportional to the body whatever count of (empty, invalid) spans the body holds.
const minWireSpan = 37

// decoders keeps wireDecoders between requests, so that their maps and scratch lists keep the room they grew
// to instead of growing again for every request.
var decoders = sync.Pool{New: func() any { return &wireDecoder{intern: map[string]string{}, values: map[string]any{}} }}

// maxPooledEntries bounds the entries a pooled decoder's maps may have held: a decoder that read an unusual
// request is dropped rather than kept with maps that large.
const maxPooledEntries = 1 << 14

// getDecoder returns an empty decoder for one request that builds documents.
func getDecoder(lim Limits) *wireDecoder {
	d := decoders.Get().(*wireDecoder)
	d.c = checker{lim: lim.resolve()}
	return d
}

// release empties d, keeping the room of its maps and lists but nothing of the request, and pools it.
func (d *wireDecoder) release() {
	if len(d.intern) > maxPooledEntries || len(d.values) > maxPooledEntries {
		return
	}
	clear(d.intern)
	clear(d.values)
	clear(d.keySlots)
	clear(d.valueSlots)
	d.keySlots, d.valueSlots, d.bySlot = d.keySlots[:0], d.valueSlots[:0], false
	for _, l := range []*[][]byte{&d.attrs, &d.events, &d.links, &d.eventAttrs, &d.linkAttrs} {
		if cap(*l) > maxPooledEntries {
			*l = nil
		}
		clear((*l)[:cap(*l)])
		*l = (*l)[:0]
	}
	d.envoy = envoyResources{}
	decoders.Put(d)
}

// str returns b, already checked for UTF-8, as a string; equal strings of one request are shared. When the
// decoder only validates, the string is b itself, not copied: it feeds only limit checks, which copy what they
// put in an error, and builds nothing that outlives the walk.
func (d *wireDecoder) str(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if d.validate {
		return unsafe.String(&b[0], len(b))
	}
	if s, ok := d.intern[string(b)]; ok {
		return s
	}
	s := string(b)
	d.intern[s] = s
	return s
}

// maxSharedValue is the longest string attribute value shared between the documents of one request: short
// values (methods, hosts, routes, ids of a few services) repeat from span to span.
const maxSharedValue = 64

// stringValue returns b, already checked for UTF-8, as a boxed string, sharing short values within the request.
func (d *wireDecoder) stringValue(b []byte) any {
	if len(b) > maxSharedValue {
		return string(b)
	}
	if v, ok := d.values[string(b)]; ok {
		return v
	}
	s := string(b)
	v := any(s)
	d.values[s] = v
	return v
}

// keep appends raw to list while it holds fewer than max entries, and counts it in n either way.
func keep(list [][]byte, n *int, max int, raw []byte) [][]byte {
	if *n++; *n <= max {
		list = append(list, raw)
	}
	return list
}

// resourceSpans flattens one ResourceSpans message, the ith of the request, in two passes: the resource (whose
// occurrences merge: their attributes concatenate), then the scope spans.
func (d *wireDecoder) resourceSpans(dst []document.Span, b []byte, i int, rej *Rejected) ([]document.Span, error) {
	attrs, n, max := d.attrs[:0], 0, d.c.lim.MaxResourceAttributes
	err := forEach(b, 1, func(r []byte) error {
		return forEach(r, 1, func(kv []byte) error {
			attrs = keep(attrs, &n, max, kv)
			return nil
		})
	})
	d.attrs = attrs
	if err != nil {
		return dst, err
	}
	resource, err := d.attributes(attrs, n, spanAt(i, -1, -1, "resource.attributes"), true)
	if err != nil {
		return dst, err
	}
	service := UnknownService
	if s, ok := resource["service.name"].(string); ok && s != "" {
		service = s
	}
	d.envoy.reset(resource)
	for j := 0; len(b) > 0; {
		var f wireField
		rest, err := nextField(b, &f)
		if err != nil {
			return dst, err
		}
		b = rest
		if f.is(2, protowire.BytesType) {
			if dst, err = d.scopeSpans(dst, f.buf, i, j, service, resource, rej); err != nil {
				return dst, err
			}
			j++
		}
	}
	return dst, nil
}

// scopeSpans flattens one ScopeSpans message in two passes: the scope name (scope occurrences merge: the last
// name wins), then the spans.
func (d *wireDecoder) scopeSpans(dst []document.Span, b []byte, i, j int, service string, resource map[string]any, rej *Rejected) ([]document.Span, error) {
	var name []byte
	err := forEach(b, 1, func(scope []byte) error {
		return forEach(scope, 1, func(n []byte) error {
			name = n
			return checkUTF8(n)
		})
	})
	if err != nil {
		return dst, err
	}
	if err := d.c.str(spanAt(i, j, -1, "scope.name"), len(name)); err != nil {
		return dst, err
	}
	scope := d.str(name)
	for k := 0; len(b) > 0; {
		var f wireField
		rest, err := nextField(b, &f)
		if err != nil {
			return dst, err
		}
		b = rest
		if !f.is(2, protowire.BytesType) {
			continue
		}
		doc, reason, err := d.span(f.buf, spanAt(i, j, k, ""))
		if err != nil {
			return dst, err
		}
		switch {
		case reason != "":
			rej.add(fmt.Sprintf("resourceSpans[%d].scopeSpans[%d].spans[%d]", i, j, k), reason)
		case d.validate:
			d.valid++
		default:
			doc.Service, doc.Resource, doc.Scope = service, resource, scope
			d.envoy.envoySpan(&doc)
			if d.room > 0 { // room for every span, allocated once a span is valid
				dst, d.room = slices.Grow(dst, d.room), 0
			}
			dst = append(dst, doc)
		}
		k++
	}
	return dst, nil
}

// wireSpan holds the fields of a span as read; strings stay raw until they pass the limits, and repeated fields
// keep their raw messages (no more than their limit) and their count.
type wireSpan struct {
	traceID, spanID, parentID []byte
	name, statusMessage       []byte
	kind, statusCode          int32
	start, end                uint64
	attrs, events, links      [][]byte
	nAttrs, nEvents, nLinks   int
}

// span decodes one span; reason says why it is rejected, err that the bytes are malformed or exceed the limits.
// The limits are checked in the order Spans checks them.
func (d *wireDecoder) span(b []byte, at where) (doc document.Span, reason string, err error) {
	lim := &d.c.lim
	s := wireSpan{attrs: d.attrs[:0], events: d.events[:0], links: d.links[:0]}
	defer func() { d.attrs, d.events, d.links = s.attrs, s.events, s.links }()
	for len(b) > 0 {
		var f wireField
		rest, err := nextField(b, &f)
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
			err = checkUTF8(f.buf)
		case f.is(4, protowire.BytesType):
			s.parentID = f.buf
		case f.is(5, protowire.BytesType):
			s.name, err = f.buf, checkUTF8(f.buf)
		case f.is(6, protowire.VarintType):
			s.kind = int32(f.val)
		case f.is(7, protowire.Fixed64Type):
			s.start = f.val
		case f.is(8, protowire.Fixed64Type):
			s.end = f.val
		case f.is(9, protowire.BytesType):
			s.attrs = keep(s.attrs, &s.nAttrs, lim.MaxAttributes, f.buf)
		case f.is(11, protowire.BytesType):
			s.events = keep(s.events, &s.nEvents, lim.MaxEvents, f.buf)
		case f.is(13, protowire.BytesType):
			s.links = keep(s.links, &s.nLinks, lim.MaxLinks, f.buf)
		case f.is(15, protowire.BytesType): // status; occurrences merge
			err = d.status(&s, f.buf)
		}
		if err != nil {
			return doc, "", err
		}
	}
	if err := d.c.spanCounts(at, s.nAttrs, s.nEvents, s.nLinks, len(s.name), len(s.statusMessage)); err != nil {
		return doc, "", err
	}
	d.bySlot = !d.validate // spans of a request tend to repeat their keys, and many values, in the same order
	attr, err := d.attributes(s.attrs, s.nAttrs, at.at("attributes", -1, ""), false)
	d.bySlot = false
	if err != nil {
		return doc, "", err
	}
	var events []document.Event
	if len(s.events) > 0 {
		events = make([]document.Event, len(s.events))
		for i, e := range s.events {
			if events[i], err = d.event(e, at, i); err != nil {
				return doc, "", err
			}
		}
	}
	var links []wireLink
	if len(s.links) > 0 {
		links = make([]wireLink, len(s.links))
		for i, l := range s.links {
			if links[i], err = d.link(l, at, i); err != nil {
				return doc, "", err
			}
		}
	}
	if reason := checkSpan(s.traceID, s.spanID, s.parentID, s.start, s.end); reason != "" {
		return doc, reason, nil
	}
	for i, l := range links {
		if reason := checkLink(i, l.traceID, l.spanID); reason != "" {
			return doc, reason, nil
		}
	}
	if d.validate {
		return doc, "", nil
	}
	doc = newSpan(s.traceID, s.spanID, s.parentID, d.str(s.name), s.kind, s.start, s.end, s.statusCode, string(s.statusMessage))
	doc.Attr, doc.Events = attr, events
	if len(links) > 0 {
		doc.Links = make([]document.Link, len(links))
		for i, l := range links {
			doc.Links[i] = newLink(l.traceID, l.spanID, l.attr)
		}
	}
	return doc, "", nil
}

func (d *wireDecoder) status(s *wireSpan, b []byte) error {
	for len(b) > 0 {
		var f wireField
		rest, err := nextField(b, &f)
		if err != nil {
			return err
		}
		b = rest
		switch {
		case f.is(2, protowire.BytesType):
			if err := checkUTF8(f.buf); err != nil {
				return err
			}
			s.statusMessage = f.buf
		case f.is(3, protowire.VarintType):
			s.statusCode = int32(f.val)
		}
	}
	return nil
}

// event decodes event i of the span at at.
func (d *wireDecoder) event(b []byte, at where, i int) (document.Event, error) {
	var e document.Event
	var name []byte
	attrs, n := d.eventAttrs[:0], 0
	defer func() { d.eventAttrs = attrs }()
	for len(b) > 0 {
		var f wireField
		rest, err := nextField(b, &f)
		if err != nil {
			return e, err
		}
		b = rest
		switch {
		case f.is(1, protowire.Fixed64Type):
			e.Time = int64(f.val / 1000)
		case f.is(2, protowire.BytesType):
			if err := checkUTF8(f.buf); err != nil {
				return e, err
			}
			name = f.buf
		case f.is(3, protowire.BytesType):
			attrs = keep(attrs, &n, d.c.lim.MaxAttributes, f.buf)
		}
	}
	if err := d.c.str(at.at("events", i, "name"), len(name)); err != nil {
		return e, err
	}
	var err error
	e.Name = d.str(name)
	e.Attr, err = d.attributes(attrs, n, at.at("events", i, "attributes"), false)
	return e, err
}

// wireLink is a link as read: raw ids, for checkLink, and flattened attributes.
type wireLink struct {
	traceID, spanID []byte
	attr            map[string]any
}

// link decodes link i of the span at at.
func (d *wireDecoder) link(b []byte, at where, i int) (wireLink, error) {
	var l wireLink
	attrs, n := d.linkAttrs[:0], 0
	defer func() { d.linkAttrs = attrs }()
	for len(b) > 0 {
		var f wireField
		rest, err := nextField(b, &f)
		if err != nil {
			return l, err
		}
		b = rest
		switch {
		case f.is(1, protowire.BytesType):
			l.traceID = f.buf
		case f.is(2, protowire.BytesType):
			l.spanID = f.buf
		case f.is(3, protowire.BytesType): // trace_state
			if err := checkUTF8(f.buf); err != nil {
				return l, err
			}
		case f.is(4, protowire.BytesType):
			attrs = keep(attrs, &n, d.c.lim.MaxAttributes, f.buf)
		}
	}
	var err error
	l.attr, err = d.attributes(attrs, n, at.at("links", i, "attributes"), false)
	return l, err
}
