package kafka

import (
	"encoding/binary"
	"errors"
)

// errShort reports that a field runs past the end of the data being read.
var errShort = errors.New("kafka: truncated field")

// errInvalid reports a length or count that no valid message carries.
var errInvalid = errors.New("kafka: invalid length")

// reader reads Kafka wire primitives from a byte slice. The first failure sticks: later reads return zero values
// and err keeps the first error, so parsers check err once after a group of reads.
type reader struct {
	b   []byte
	off int
	err error
}

func (r *reader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
	r.off = len(r.b)
}

func (r *reader) remaining() int { return len(r.b) - r.off }

func (r *reader) take(n int) []byte {
	if n < 0 {
		r.fail(errInvalid)
		return nil
	}
	if r.remaining() < n {
		r.fail(errShort)
		return nil
	}
	s := r.b[r.off : r.off+n : r.off+n]
	r.off += n
	return s
}

func (r *reader) skip(n int) { r.take(n) }

func (r *reader) int8() int8 {
	if b := r.take(1); b != nil {
		return int8(b[0])
	}
	return 0
}

func (r *reader) int16() int16 {
	if b := r.take(2); b != nil {
		return int16(binary.BigEndian.Uint16(b))
	}
	return 0
}

func (r *reader) int32() int32 {
	if b := r.take(4); b != nil {
		return int32(binary.BigEndian.Uint32(b))
	}
	return 0
}

func (r *reader) int64() int64 {
	if b := r.take(8); b != nil {
		return int64(binary.BigEndian.Uint64(b))
	}
	return 0
}

func (r *reader) uuid() (id [16]byte) {
	copy(id[:], r.take(16))
	return id
}

// uvarint reads an unsigned LEB128 varint (compact lengths, tag numbers).
func (r *reader) uvarint() uint64 {
	if r.off < len(r.b) && r.b[r.off] < 0x80 { // one byte: most lengths and counts
		r.off++
		return uint64(r.b[r.off-1])
	}
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b[r.off:])
	if n <= 0 {
		if n == 0 {
			r.fail(errShort)
		} else {
			r.fail(errInvalid)
		}
		return 0
	}
	r.off += n
	return v
}

// compactLen reads a compact (length+1) length; -1 means null.
func (r *reader) compactLen() int {
	u := r.uvarint()
	if u > uint64(r.remaining())+1 {
		r.fail(errInvalid)
		return -1
	}
	return int(u) - 1
}

// arrayLen reads an array length in the flexible (compact) or classic (int32) encoding; -1 means null.
func (r *reader) arrayLen(flexible bool) int {
	if flexible {
		return r.compactLen()
	}
	n := r.int32()
	if n < -1 || int(n) > r.remaining() {
		r.fail(errInvalid)
		return -1
	}
	return int(n)
}

// str reads a (nullable) string in the flexible or classic encoding. Null reads as nil.
func (r *reader) str(flexible bool) []byte {
	var n int
	if flexible {
		n = r.compactLen()
	} else {
		n = int(r.int16())
	}
	if n < 0 {
		if n < -1 {
			r.fail(errInvalid)
		}
		return nil
	}
	return r.take(n)
}

// bytes reads (nullable) bytes in the flexible or classic (int32 length) encoding. Null reads as nil.
func (r *reader) bytes(flexible bool) []byte {
	var n int
	if flexible {
		n = r.compactLen()
	} else {
		n = int(r.int32())
	}
	if n < 0 {
		if n < -1 {
			r.fail(errInvalid)
		}
		return nil
	}
	return r.take(n)
}

// tags skips a tagged-fields section (flexible versions only).
func (r *reader) tags(flexible bool) {
	if !flexible {
		return
	}
	n := r.uvarint()
	for i := uint64(0); i < n && r.err == nil; i++ {
		r.uvarint() // tag
		size := r.uvarint()
		if size > uint64(r.remaining()) {
			r.fail(errShort)
			return
		}
		r.skip(int(size))
	}
}

// topicRef reads how a request or response names a topic: by id (byID, the versions that carry topic ids)
// or by name.
func (r *reader) topicRef(byID, flex bool) (name []byte, id [16]byte) {
	if byID {
		return nil, r.uuid()
	}
	return r.str(flex), id
}
