package kafka

import (
	"bytes"
	"encoding/binary"
)

// Record batch v2 layout: the fixed header is 61 bytes; the fields the decoder reads sit at these offsets.
const (
	batchHeaderLen         = 61
	batchOffMagic          = 16
	batchOffAttributes     = 21
	batchOffFirstTimestamp = 27
	batchOffMaxTimestamp   = 35
	batchOffCount          = 57
	batchLogOverhead       = 12 // baseOffset + batchLength, not counted by batchLength
	// legacyMinLen is the smallest message size of magic v0 (crc, magic, attributes, null key, null value):
	// enough to read the magic byte of any entry.
	legacyMinLen = 14

	attrCodecMask     = 0x07
	attrLogAppendTime = 0x08
	attrTransactional = 0x10
	attrControl       = 0x20
)

// Well-known record header names, always collected.
const (
	HeaderTraceParent = "traceparent"
	HeaderTraceState  = "tracestate"
	HeaderBaggage     = "baggage"
)

// readRecordSet reads the record batches in one partition's records field into t. A trailing partial batch
// that the broker cut (Fetch responses may end with one) is ignored; one that the decoder's frame limit cut
// still counts, from its header, as undecoded records. Legacy messages (magic v0/v1: the magic byte sits at the
// same position) count as one undecoded record each; control batches (transaction markers) are not counted.
func (d *Decoder) readRecordSet(t *Topic, rs recordSet) {
	set := rs.b
	for len(set) >= batchLogOverhead {
		base := int64(binary.BigEndian.Uint64(set))
		length := int(int32(binary.BigEndian.Uint32(set[8:])))
		if length < legacyMinLen {
			return
		}
		if length > len(set)-batchLogOverhead {
			if rs.cut && len(set) > batchOffMagic {
				d.countCutBatch(t, base, set)
			}
			return
		}
		batch := set[:batchLogOverhead+length]
		set = set[batchLogOverhead+length:]
		if magic := batch[batchOffMagic]; magic != 2 {
			if magic < 2 {
				t.countLegacy(base)
			}
			continue // magic > 2: not a format the decoder knows
		}
		if len(batch) < batchHeaderLen {
			return
		}
		attrs := int16(binary.BigEndian.Uint16(batch[batchOffAttributes:]))
		if attrs&attrControl != 0 {
			continue // a transaction marker: no records
		}
		count := int(int32(binary.BigEndian.Uint32(batch[batchOffCount:])))
		t.countBatch(base, attrs, count, batch)
		if count <= 0 || !d.wantRecords(t) {
			continue
		}
		codec := Codec(attrs & attrCodecMask)
		body := batch[batchHeaderLen:]
		if codec != CodecNone {
			out, err := d.decompress(codec, body)
			if err != nil && len(out) == 0 {
				t.Undecoded += count
				continue
			}
			body = out
		}
		t.Undecoded += d.readRecords(t, body, count, batchTime(attrs, batch))
	}
}

// recordTime turns a record's timestamp delta into its timestamp: the batch's first timestamp plus the
// delta, or, with LogAppendTime, the broker's append time for every record.
type recordTime struct {
	first, appended int64
}

func batchTime(attrs int16, batch []byte) recordTime {
	if attrs&attrLogAppendTime != 0 {
		return recordTime{appended: int64(binary.BigEndian.Uint64(batch[batchOffMaxTimestamp:]))}
	}
	return recordTime{first: int64(binary.BigEndian.Uint64(batch[batchOffFirstTimestamp:]))}
}

func (rt recordTime) at(delta int64) int64 {
	if rt.appended != 0 || rt.first <= 0 {
		return rt.appended
	}
	return rt.first + delta
}

// countBatch adds a v2 batch's header to t: its records, first offset, compression, timestamps and whether
// a transactional producer wrote it.
func (t *Topic) countBatch(base int64, attrs int16, count int, header []byte) {
	t.Batches++
	count = max(count, 0)
	if t.Records == 0 || base < t.FirstOffset {
		t.FirstOffset = base
	}
	t.Records += count
	if codec := Codec(attrs & attrCodecMask); codec != CodecNone && t.Compression == CodecNone {
		t.Compression = codec
	}
	if attrs&attrTransactional != 0 {
		t.Transactional = true
	}
	if count == 0 {
		return // an empty batch (left by compaction) has no record whose age matters
	}
	first := int64(binary.BigEndian.Uint64(header[batchOffFirstTimestamp:]))
	last := int64(binary.BigEndian.Uint64(header[batchOffMaxTimestamp:]))
	if attrs&attrLogAppendTime != 0 {
		first = last // the broker's append time is in max timestamp; the record timestamps are the producer's
	}
	if first > 0 && (t.OldestTimestamp == 0 || first < t.OldestTimestamp) {
		t.OldestTimestamp = first
	}
	if last > 0 && last > t.NewestTimestamp {
		t.NewestTimestamp = last
	}
}

// countLegacy counts a magic v0/v1 message (or a compressed wrapper of several, whose inner count is not
// read) as one undecoded record.
func (t *Topic) countLegacy(offset int64) {
	if t.Records == 0 || offset < t.FirstOffset {
		t.FirstOffset = offset
	}
	t.Batches++
	t.Records++
	t.Undecoded++
}

// countCutBatch counts the records of a batch whose body lies beyond the decoder's frame limit.
func (d *Decoder) countCutBatch(t *Topic, base int64, batch []byte) {
	if magic := batch[batchOffMagic]; magic < 2 {
		t.countLegacy(base)
		return
	} else if magic > 2 || len(batch) < batchHeaderLen {
		return
	}
	attrs := int16(binary.BigEndian.Uint16(batch[batchOffAttributes:]))
	count := int(int32(binary.BigEndian.Uint32(batch[batchOffCount:])))
	if attrs&attrControl != 0 || count <= 0 {
		return
	}
	t.countBatch(base, attrs, count, batch)
	t.Undecoded += count
}

// wantRecords reports whether reading individual records can still add anything to t.
func (d *Decoder) wantRecords(t *Topic) bool {
	return !t.skip && (len(t.Contexts) < d.cfg.MaxContexts || len(t.Headers) < len(d.wanted) || (d.cfg.RecordKey && !t.HasKey))
}

// readRecords reads the records of a batch's body, at most Config.MaxRecordsRead of them, and returns how
// many of the count records it could not read because the body is malformed or cut.
func (d *Decoder) readRecords(t *Topic, body []byte, count int, rt recordTime) (undecoded int) {
	pos := 0
	for n := 0; n < count; n++ {
		if n == d.cfg.MaxRecordsRead || !d.wantRecords(t) {
			return 0
		}
		size, i := svarint(body, pos)
		if i < 0 || size < 0 || size > int64(len(body)-i) {
			return count - n
		}
		pos = i + int(size)
		if !d.readRecord(t, body[i:pos], count == 1, rt) {
			return count - n
		}
	}
	return 0
}

// readRecord reads one record (after its length): the key of a single record, the collected headers and
// the trace context with the record's timestamp.
func (d *Decoder) readRecord(t *Topic, rec []byte, single bool, rt recordTime) bool {
	delta, i := svarint(rec, 1) // after the attributes byte: timestamp delta
	_, i = svarint(rec, i)      // offset delta
	key, i := field(rec, i)
	_, i = field(rec, i) // value
	headers, i := svarint(rec, i)
	var parent, state []byte
	for h := int64(0); h < headers && i >= 0; h++ {
		var hk, hv []byte
		hk, i = field(rec, i)
		hv, i = field(rec, i)
		if i < 0 {
			break
		}
		switch string(hk) {
		case HeaderTraceParent:
			parent = hv
		case HeaderTraceState:
			state = hv
		}
		d.collectHeader(t, hk, hv)
	}
	if i < 0 {
		return false
	}
	if d.cfg.RecordKey && single && t.Records == 1 && key != nil {
		t.Key = d.keep.copy(key)
		t.HasKey = true
	}
	if parent != nil {
		d.addContext(t, parent, state, rt.at(delta))
	}
	return true
}

// svarint decodes the zig-zag varint at b[i:] and returns it with the index after it, or -1 if there is none.
// The one-byte case is inlined: record lengths and counts are mostly small.
func svarint(b []byte, i int) (int64, int) {
	if uint(i) < uint(len(b)) && b[i] < 0x80 {
		u := int64(b[i])
		return u>>1 ^ -(u & 1), i + 1
	}
	return svarintLong(b, i)
}

func svarintLong(b []byte, i int) (int64, int) {
	if uint(i) >= uint(len(b)) {
		return 0, -1
	}
	v, n := binary.Varint(b[i:])
	if n <= 0 {
		return 0, -1
	}
	return v, i + n
}

// field reads the record field with a zig-zag varint length at b[i:] (length -1 is null) and returns it with
// the index after it, or -1 if it is malformed or cut.
func field(b []byte, i int) ([]byte, int) {
	n, i := svarint(b, i)
	if i < 0 || n < -1 || n > int64(len(b)-i) {
		return nil, -1
	}
	if n < 0 {
		return nil, i
	}
	return b[i : i+int(n) : i+int(n)], i + int(n)
}

func (d *Decoder) collectHeader(t *Topic, key, value []byte) {
	for _, w := range d.wanted {
		if !equalFold(w, key) {
			continue
		}
		if _, ok := t.Header(w); !ok {
			t.Headers = append(t.Headers, Header{Key: w, Value: d.keep.copy(value)})
		}
		return
	}
}

func (d *Decoder) addContext(t *Topic, parent, state []byte, ts int64) {
	for i := range t.Contexts {
		if c := &t.Contexts[i]; bytes.Equal(c.TraceParent, parent) {
			if ts > 0 && (c.Timestamp == 0 || ts < c.Timestamp) {
				c.Timestamp = ts
			}
			return
		}
	}
	if len(t.Contexts) >= d.cfg.MaxContexts {
		return
	}
	c := Context{TraceParent: d.keep.copy(parent), Timestamp: max(ts, 0)}
	if state != nil {
		c.TraceState = d.keep.copy(state)
	}
	t.Contexts = append(t.Contexts, c)
}

// equalFold reports whether s equals b ignoring the case of ASCII letters only. strings.EqualFold (or
// bytes.EqualFold) is not the same: it also folds non-ASCII letters (a configured header "É" would collect a
// record header "é"), and it would need b as a string (a copy per record header under TinyGo, or unsafe).
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
