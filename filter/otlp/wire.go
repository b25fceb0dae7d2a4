// This file writes the few protobuf wire primitives the encoder needs by hand instead of importing
// google.golang.org/protobuf/encoding/protowire. Measured with protowire in their place (same output, byte
// for byte), December 2026: build/filter.wasm (TinyGo) grew by 1.7 KB (595,606 -> 597,306 bytes) and
// build/filter-go.wasm by 7.9 KB, but BenchmarkRequestVersus (filter/plugin, traced HTTP stream with export,
// 3 runs each) put the per-request cost up by 1.5% on TinyGo (p10 ratio 1.014-1.017) and 9% on Go wasip1
// (1.090-1.098), and a native benchmark of Batch.Add and AppendRequest was 1.5-2.5x slower: protowire's
// AppendVarint is a large switch the compilers do not inline, and appendTag's one-byte path is gone. The size
// is small, the speed not equal, so the package keeps its own.

package otlp

// Protobuf wire types.
const (
	wireVarint  = 0
	wireFixed64 = 1
	wireBytes   = 2
	wireFixed32 = 5
)

func appendTag(dst []byte, num, wire int) []byte {
	if num < 16 { // a one-byte tag, as for all but one field this package writes
		return append(dst, byte(num<<3|wire))
	}
	return appendVarint(dst, uint64(num)<<3|uint64(wire))
}

func appendVarint(dst []byte, v uint64) []byte {
	for v >= 0x80 {
		dst = append(dst, byte(v)|0x80)
		v >>= 7
	}
	return append(dst, byte(v))
}

func varintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

func appendVarintField(dst []byte, num int, v uint64) []byte {
	return appendVarint(appendTag(dst, num, wireVarint), v)
}

func appendFixed64(dst []byte, num int, v uint64) []byte {
	dst = appendTag(dst, num, wireFixed64)
	return append(dst, byte(v), byte(v>>8), byte(v>>16), byte(v>>24), byte(v>>32), byte(v>>40), byte(v>>48), byte(v>>56))
}

func appendFixed32(dst []byte, num int, v uint32) []byte {
	dst = appendTag(dst, num, wireFixed32)
	return append(dst, byte(v), byte(v>>8), byte(v>>16), byte(v>>24))
}

// appendString appends a non-empty string field (proto3 omits empty scalars).
func appendString(dst []byte, num int, s string) []byte {
	if s == "" {
		return dst
	}
	dst = appendTag(dst, num, wireBytes)
	dst = appendVarint(dst, uint64(len(s)))
	return append(dst, s...)
}

func appendBytes(dst []byte, num int, b []byte) []byte {
	dst = appendTag(dst, num, wireBytes)
	dst = appendVarint(dst, uint64(len(b)))
	return append(dst, b...)
}

// begin starts an embedded message field: it writes the tag and returns the offset its body starts at.
func begin(dst []byte, num int) ([]byte, int) {
	dst = appendTag(dst, num, wireBytes)
	return dst, len(dst)
}

// end finishes the embedded message begun at start by inserting its length prefix before the body.
func end(dst []byte, start int) []byte {
	n := len(dst) - start
	k := varintLen(uint64(n))
	for i := 0; i < k; i++ {
		dst = append(dst, 0)
	}
	copy(dst[start+k:], dst[start:start+n])
	appendVarint(dst[start:start], uint64(n))
	return dst
}
