package flatten

import (
	"encoding/binary"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
)

// Reading the protobuf wire format: fields one at a time, repeated fields, strings checked as protobuf checks
// them. FromProtobuf's walk (wire.go) is built on these.

// wireField is one field of a message on the wire: val holds varint and fixed values, buf length-delimited ones.
type wireField struct {
	num protowire.Number
	typ protowire.Type
	val uint64
	buf []byte
}

func nextField(b []byte, f *wireField) ([]byte, error) {
	// Fast path: a one-byte tag (fields 1-15) and, for length-delimited fields, a length of one or two bytes,
	// which is nearly every field of a span; anything else, errors included, takes the general path. f is set
	// field by field: a composite literal is built on the stack and copied, which stalls store forwarding.
	if len(b) >= 2 && b[0] < 0x80 && b[0] >= 1<<3 {
		num, typ := protowire.Number(b[0]>>3), protowire.Type(b[0]&7)
		switch typ {
		case protowire.BytesType:
			m, h := uint64(b[1]), 2
			if m >= 0x80 {
				if len(b) < 3 || b[2] >= 0x80 {
					break
				}
				m, h = m&0x7f|uint64(b[2])<<7, 3
			}
			if m <= uint64(len(b)-h) {
				end := h + int(m)
				f.num, f.typ, f.val, f.buf = num, typ, 0, b[h:end]
				return b[end:], nil
			}
		case protowire.VarintType:
			if b[1] < 0x80 {
				f.num, f.typ, f.val, f.buf = num, typ, uint64(b[1]), nil
				return b[2:], nil
			}
		case protowire.Fixed64Type:
			if len(b) >= 9 {
				f.num, f.typ, f.val, f.buf = num, typ, binary.LittleEndian.Uint64(b[1:9]), nil
				return b[9:], nil
			}
		}
	}
	return nextFieldSlow(b, f)
}

// nextFieldSlow is nextField for any tag and length, with protowire's errors.
func nextFieldSlow(b []byte, f *wireField) ([]byte, error) {
	num, typ, n := protowire.ConsumeTag(b)
	if n < 0 {
		return nil, protowire.ParseError(n)
	}
	b = b[n:]
	*f = wireField{num: num, typ: typ}
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
		return nil, protowire.ParseError(n)
	}
	return b[n:], nil
}

// is reports whether f is field num with the wire type the schema gives it; protobuf treats a field with another
// wire type as unknown.
func (f *wireField) is(num protowire.Number, typ protowire.Type) bool {
	return f.num == num && f.typ == typ
}

// forEach calls fn with each occurrence, in order, of the length-delimited field num of message b.
func forEach(b []byte, num protowire.Number, fn func([]byte) error) error {
	for len(b) > 0 {
		var f wireField
		rest, err := nextField(b, &f)
		if err != nil {
			return err
		}
		b = rest
		if f.is(num, protowire.BytesType) {
			if err := fn(f.buf); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkUTF8 checks a string field as protobuf does for proto3 strings, without converting it.
func checkUTF8(b []byte) error {
	if !utf8.Valid(b) {
		return errInvalidUTF8
	}
	return nil
}
