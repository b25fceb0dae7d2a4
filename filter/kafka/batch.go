package kafka

import "bytes"

// Record batch v2 layout: the fixed header is 61 bytes; the fields the decoder reads sit at these offsets.
const (
	batchHeaderLen     = 61
	batchOffMagic      = 16
	batchOffAttributes = 21
	batchOffLastDelta  = 23
	batchOffCount      = 57
	batchLogOverhead   = 12 // baseOffset + batchLength, not counted by batchLength

	attrCodecMask = 0x07
	attrControl   = 0x20
)

// Well-known record header names, always collected.
const (
	HeaderTraceParent = "traceparent"
	HeaderTraceState  = "tracestate"
	HeaderBaggage     = "baggage"
)

// readRecordSet reads the record batches in one partition's records field into t. A trailing partial batch
// that the broker cut (Fetch responses may end with one) is ignored; one that the decoder's frame limit cut
// still counts, from its header, as undecoded records.
func (d *Decoder) readRecordSet(t *Topic, rs recordSet) {
	set := rs.b
	for len(set) >= batchLogOverhead {
		base := int64(be64(set))
		length := int(int32(be32(set[8:])))
		if length < batchHeaderLen-batchLogOverhead {
			return
		}
		if length > len(set)-batchLogOverhead {
			if rs.cut && len(set) >= batchHeaderLen {
				d.countCutBatch(t, set)
			}
			return
		}
		batch := set[:batchLogOverhead+length]
		set = set[batchLogOverhead+length:]
		attrs := int16(be16(batch[batchOffAttributes:]))
		if batch[batchOffMagic] != 2 || attrs&attrControl != 0 {
			continue // a message set (magic v0/v1, not sent by Produce v3+) or a transaction marker
		}
		t.Batches++
		count := int(int32(be32(batch[batchOffCount:])))
		if count < 0 {
			count = 0
		}
		lastOffset := base + int64(int32(be32(batch[batchOffLastDelta:])))
		if t.Records == 0 || base < t.FirstOffset {
			t.FirstOffset = base
		}
		if lastOffset > t.LastOffset || t.Records == 0 {
			t.LastOffset = lastOffset
		}
		t.Records += count
		codec := Codec(attrs & attrCodecMask)
		if codec != CodecNone && t.Compression == CodecNone {
			t.Compression = codec
		}
		if !d.wantRecords(t) {
			continue
		}
		body := batch[batchHeaderLen:]
		if codec != CodecNone {
			out, err := d.decompress(codec, body)
			if err != nil && len(out) == 0 {
				t.Undecoded += count
				continue
			}
			body = out
		}
		t.Undecoded += count - d.readRecords(t, body, count)
	}
}

// countCutBatch counts the records of a batch whose body lies beyond the decoder's frame limit.
func (d *Decoder) countCutBatch(t *Topic, batch []byte) {
	attrs := int16(be16(batch[batchOffAttributes:]))
	count := int(int32(be32(batch[batchOffCount:])))
	if batch[batchOffMagic] != 2 || attrs&attrControl != 0 || count <= 0 {
		return
	}
	t.Batches++
	t.Records += count
	t.Undecoded += count
	if codec := Codec(attrs & attrCodecMask); codec != CodecNone && t.Compression == CodecNone {
		t.Compression = codec
	}
}

// wantRecords reports whether reading individual records can still add anything to t.
func (d *Decoder) wantRecords(t *Topic) bool {
	return len(t.Contexts) < d.cfg.MaxContexts || len(t.Headers) < len(d.wanted) || (d.cfg.RecordKey && !t.HasKey)
}

// readRecords reads up to count records from body and returns how many it read completely.
func (d *Decoder) readRecords(t *Topic, body []byte, count int) int {
	r := reader{b: body}
	n := 0
	for ; n < count; n++ {
		size := r.varint()
		if r.err != nil || size < 0 || int(size) > r.remaining() {
			break
		}
		rec := reader{b: r.take(int(size))}
		rec.skip(1)  // attributes
		rec.varint() // timestamp delta
		rec.varint() // offset delta
		key := rec.varbytes()
		rec.varbytes() // value
		headers := int(rec.varint())
		var parent, state []byte
		for i := 0; i < headers && rec.err == nil; i++ {
			hk := rec.varbytes()
			hv := rec.varbytes()
			if rec.err != nil {
				break
			}
			switch {
			case string(hk) == HeaderTraceParent:
				parent = hv
			case string(hk) == HeaderTraceState:
				state = hv
			}
			d.collectHeader(t, hk, hv)
		}
		if rec.err != nil {
			break
		}
		if d.cfg.RecordKey && count == 1 && t.Records == 1 && key != nil {
			t.Key = append([]byte(nil), key...)
			t.HasKey = true
		}
		if parent != nil {
			d.addContext(t, parent, state)
		}
	}
	return n
}

// varbytes reads a record field with a zig-zag varint length; -1 is null.
func (r *reader) varbytes() []byte {
	n := r.varint()
	if n < 0 {
		if n < -1 {
			r.fail(errInvalid)
		}
		return nil
	}
	if n > int64(r.remaining()) {
		r.fail(errShort)
		return nil
	}
	return r.take(int(n))
}

func (d *Decoder) collectHeader(t *Topic, key, value []byte) {
	for _, w := range d.wanted {
		if !equalFold(w, key) {
			continue
		}
		if _, ok := t.Header(w); !ok {
			t.Headers = append(t.Headers, Header{Key: w, Value: append([]byte(nil), value...)})
		}
		return
	}
}

func (d *Decoder) addContext(t *Topic, parent, state []byte) {
	if len(t.Contexts) >= d.cfg.MaxContexts {
		return
	}
	for _, c := range t.Contexts {
		if bytes.Equal(c.TraceParent, parent) {
			return
		}
	}
	c := Context{TraceParent: append([]byte(nil), parent...)}
	if state != nil {
		c.TraceState = append([]byte(nil), state...)
	}
	t.Contexts = append(t.Contexts, c)
}

// equalFold reports whether the ASCII string s equals b ignoring case.
func equalFold(s string, b []byte) bool {
	if len(s) != len(b) {
		return false
	}
	for i := 0; i < len(s); i++ {
		x, y := s[i], b[i]
		if x == y {
			continue
		}
		if x|0x20 != y|0x20 || x|0x20 < 'a' || x|0x20 > 'z' {
			return false
		}
	}
	return true
}

func be16(b []byte) uint16 { return uint16(b[0])<<8 | uint16(b[1]) }
func be32(b []byte) uint32 {
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}
func be64(b []byte) uint64 { return uint64(be32(b))<<32 | uint64(be32(b[4:])) }
