package wasmhost

import (
	"encoding/binary"
	"errors"
	"strings"
)

// headerMap is an ordered header list with lower-case keys, as Envoy keeps them.
type headerMap [][2]string

// lookup returns the first value of name, compared case-insensitively.
func lookup(h [][2]string, name string) (string, bool) {
	for _, kv := range h {
		if strings.EqualFold(kv[0], name) {
			return kv[1], true
		}
	}
	return "", false
}

// setFrom replaces the contents with a copy of src, lower-casing the keys. It leaves room for a few
// additions so a plugin's edits do not grow the slice.
func (m *headerMap) setFrom(src [][2]string) {
	if cap(*m) < len(src) {
		*m = make(headerMap, 0, len(src)+4)
	}
	*m = (*m)[:0]
	for _, kv := range src {
		*m = append(*m, [2]string{strings.ToLower(kv[0]), kv[1]})
	}
}

// index returns the position of the first entry named key (raw guest bytes), or -1.
func (m headerMap) index(key []byte) int {
	for i, kv := range m {
		if equalFold(kv[0], key) {
			return i
		}
	}
	return -1
}

func (m *headerMap) add(key, value string) {
	*m = append(*m, [2]string{strings.ToLower(key), value})
}

// replace sets the first entry named key and removes the others; it adds key when absent.
func (m *headerMap) replace(key []byte, value string) {
	i := m.index(key)
	if i < 0 {
		m.add(string(key), value)
		return
	}
	(*m)[i][1] = value
	m.removeFrom(key, i+1)
}

func (m *headerMap) remove(key []byte) { m.removeFrom(key, 0) }

func (m *headerMap) removeFrom(key []byte, from int) {
	out := (*m)[:from]
	for _, kv := range (*m)[from:] {
		if !equalFold(kv[0], key) {
			out = append(out, kv)
		}
	}
	clear((*m)[len(out):])
	*m = out
}

// clone returns a copy safe to hand to callers.
func (m headerMap) clone() [][2]string {
	if m == nil {
		return nil
	}
	return append([][2]string(nil), m...)
}

// appendSerialized appends the proxy-wasm map encoding of h to dst: a little-endian u32 count, then
// (key size, value size) u32 pairs, then each key and value followed by a NUL byte.
func appendSerialized(dst []byte, h [][2]string) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(h)))
	for _, kv := range h {
		dst = binary.LittleEndian.AppendUint32(dst, uint32(len(kv[0])))
		dst = binary.LittleEndian.AppendUint32(dst, uint32(len(kv[1])))
	}
	for _, kv := range h {
		dst = append(dst, kv[0]...)
		dst = append(dst, 0)
		dst = append(dst, kv[1]...)
		dst = append(dst, 0)
	}
	return dst
}

var errBadMap = errors.New("malformed header map")

// appendDeserialized decodes the proxy-wasm map encoding in b and appends the pairs to dst.
func appendDeserialized(dst [][2]string, b []byte) ([][2]string, error) {
	if len(b) == 0 {
		return dst, nil
	}
	if len(b) < 4 {
		return dst, errBadMap
	}
	n := uint64(binary.LittleEndian.Uint32(b))
	sizes := b[4:]
	if n*8 > uint64(len(sizes)) {
		return dst, errBadMap
	}
	data := sizes[n*8:]
	for i := uint64(0); i < n; i++ {
		ks := uint64(binary.LittleEndian.Uint32(sizes[i*8:]))
		vs := uint64(binary.LittleEndian.Uint32(sizes[i*8+4:]))
		if ks+vs+2 > uint64(len(data)) {
			return dst, errBadMap
		}
		k := string(data[:ks])
		v := string(data[ks+1 : ks+1+vs])
		data = data[ks+vs+2:]
		dst = append(dst, [2]string{k, v})
	}
	return dst, nil
}

// equalFold reports whether s and b are equal under ASCII case folding, without allocating.
func equalFold(s string, b []byte) bool {
	if len(s) != len(b) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c, d := s[i], b[i]
		if c == d {
			continue
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if 'A' <= d && d <= 'Z' {
			d += 'a' - 'A'
		}
		if c != d {
			return false
		}
	}
	return true
}
