package flatten

import (
	"math"

	"google.golang.org/protobuf/encoding/protowire"
)

// attributes flattens an attribute set of n KeyValue messages, of which kvs are those kept, as Attributes
// does: nil when there are none.
func (d *wireDecoder) attributes(kvs [][]byte, n int, at where, resource bool) (map[string]any, error) {
	if err := d.c.startSet(at, resource, n); err != nil || n == 0 {
		return nil, err
	}
	var m map[string]any
	if !d.validate {
		m = make(map[string]any, len(kvs))
	}
	for i, kv := range kvs {
		d.slot = i
		if err := d.keyValue(m, "", kv, 0); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// validated stands for a value that passed its checks when the decoder only validates.
const validated = true

// anyValue is an AnyValue as read so far. Occurrences of an AnyValue field merge, as in protobuf: a scalar
// replaces the value, an array or key-value list extends one of the same kind and replaces anything else.
// Strings and bytes stay raw until they pass the limits; an array or list keeps no more raw parts than the
// walk can use before it reaches a limit, and counts them all.
type anyValue struct {
	kind   int      // valNone, valString, valBytes, valInt, valScalar, valArray or valKVList
	raw    []byte   // valString, valBytes
	bits   uint64   // valInt: the integer, boxed only when a document takes it
	scalar any      // valScalar: a bool or float64 value, boxed
	parts  [][]byte // raw AnyValue elements of an array, raw KeyValue entries of a key-value list
	n      int      // number of parts, counting those not kept
}

// set makes v a value of kind, field by field (a composite literal is built and copied, which stalls store
// forwarding in this hot path).
func (v *anyValue) set(kind int, raw []byte, bits uint64, scalar any) {
	v.kind, v.raw, v.bits, v.scalar, v.parts, v.n = kind, raw, bits, scalar, nil, 0
}

const (
	valNone = iota
	valString
	valBytes
	valInt
	valScalar
	valArray
	valKVList
)

// keyValue flattens one KeyValue message into m under prefix, as flattenInto does; depth is that of its value.
// m is nil when the decoder only validates.
func (d *wireDecoder) keyValue(m map[string]any, prefix string, b []byte, depth int) error {
	if err := d.c.pair(); err != nil {
		return err
	}
	if depth > maxWireDepth {
		return errTooDeep
	}
	var key []byte
	var v anyValue
	for len(b) > 0 {
		var f wireField
		rest, err := nextField(b, &f)
		if err != nil {
			return err
		}
		b = rest
		switch {
		case f.is(1, protowire.BytesType):
			key, err = f.buf, checkUTF8(f.buf)
		case f.is(2, protowire.BytesType):
			err = d.anyValue(&v, f.buf)
		}
		if err != nil {
			return err
		}
	}
	if len(key) == 0 {
		return nil
	}
	if err := d.c.key(len(prefix), len(key)); err != nil {
		return err
	}
	k := d.keyAt(key, depth)
	if v.kind == valKVList {
		if err := d.c.nest(prefix, k, depth+1); err != nil {
			return err
		}
		p := prefix + k + "."
		for _, kv := range v.parts {
			if err := d.keyValue(m, p, kv, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	val, err := d.value(&v, prefix, k, depth)
	if err == nil && val != nil && m != nil {
		if prefix != "" {
			k = prefix + k
		}
		m[k] = val
	}
	return err
}

// anyValue reads one occurrence of an AnyValue into v. It checks no limit: the value may yet be replaced.
func (d *wireDecoder) anyValue(v *anyValue, b []byte) error {
	for len(b) > 0 {
		var f wireField
		rest, err := nextField(b, &f)
		if err != nil {
			return err
		}
		b = rest
		switch {
		case f.is(1, protowire.BytesType):
			if err := checkUTF8(f.buf); err != nil {
				return err
			}
			v.set(valString, f.buf, 0, nil)
		case f.is(2, protowire.VarintType):
			v.set(valScalar, nil, 0, f.val != 0)
		case f.is(3, protowire.VarintType):
			v.set(valInt, nil, f.val, nil)
		case f.is(4, protowire.Fixed64Type):
			v.set(valScalar, nil, 0, validated)
			if !d.validate { // boxing allocates, and validating needs no value
				v.scalar = doubleValue(math.Float64frombits(f.val))
			}
		case f.is(5, protowire.BytesType):
			err = d.parts(v, valArray, f.buf, d.c.lim.MaxArrayElements)
		case f.is(6, protowire.BytesType):
			err = d.parts(v, valKVList, f.buf, d.c.keepParts())
		case f.is(7, protowire.BytesType):
			v.set(valBytes, f.buf, 0, nil)
		case f.is(8, protowire.VarintType): // string_value_strindex: no value without a dictionary
			v.set(valNone, nil, 0, nil)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// parts reads an ArrayValue or KeyValueList message (both: repeated field 1) into v, keeping at most max parts.
func (d *wireDecoder) parts(v *anyValue, kind int, b []byte, max int) error {
	if v.kind != kind {
		v.set(kind, nil, 0, nil)
	}
	return forEach(b, 1, func(p []byte) error {
		v.parts = keep(v.parts, &v.n, max, p)
		return nil
	})
}

// element converts one raw AnyValue element of an array, at depth.
func (d *wireDecoder) element(b []byte, prefix, key string, depth int) (any, error) {
	if depth > maxWireDepth {
		return nil, errTooDeep
	}
	var v anyValue
	if err := d.anyValue(&v, b); err != nil {
		return nil, err
	}
	return d.value(&v, prefix, key, depth)
}

// value converts v, the value at depth of the pair with flattened key prefix+key, as checker.value does.
func (d *wireDecoder) value(v *anyValue, prefix, key string, depth int) (any, error) {
	switch v.kind {
	case valString:
		if err := d.c.checkValue(prefix, key, len(v.raw)); err != nil {
			return nil, err
		}
		if d.validate {
			return validated, nil
		}
		return d.stringValueAt(v.raw, depth), nil
	case valBytes:
		if err := d.c.checkBytes(prefix, key, len(v.raw)); err != nil {
			return nil, err
		}
		if d.validate {
			return validated, nil
		}
		return bytesValue(v.raw), nil
	case valInt:
		if d.validate {
			return validated, nil
		}
		return d.intValueAt(int64(v.bits), depth), nil
	case valScalar:
		return v.scalar, nil
	case valArray:
		if err := d.c.nest(prefix, key, depth+1); err != nil {
			return nil, err
		}
		if err := d.c.array(prefix, key, v.n); err != nil {
			return nil, err
		}
		var out []any
		if !d.validate {
			out = make([]any, 0, len(v.parts))
		}
		for _, p := range v.parts {
			ev, err := d.element(p, prefix, key, depth+1)
			if err != nil {
				return nil, err
			}
			if ev != nil && !d.validate {
				out = append(out, ev)
			}
		}
		if d.validate {
			return validated, nil
		}
		return out, nil
	case valKVList:
		if err := d.c.nest(prefix, key, depth+1); err != nil {
			return nil, err
		}
		var m map[string]any
		if !d.validate {
			m = make(map[string]any, len(v.parts))
		}
		for _, kv := range v.parts {
			if err := d.keyValue(m, "", kv, depth+1); err != nil {
				return nil, err
			}
		}
		if d.validate {
			return validated, nil
		}
		return m, nil
	}
	return nil, nil
}
