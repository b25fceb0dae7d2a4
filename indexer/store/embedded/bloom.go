package embedded

import (
	"encoding/binary"
	"unsafe"

	"github.com/cespare/xxhash/v2"
)

// bloom is the per-segment filter of document ids, so an upsert looks up the id only in the segments that
// may hold it: 10 bits and 7 probes per id, about 1 % false positives.
type bloom struct{ words []uint64 }

const bloomProbes = 7

func newBloom(n int) bloom { return bloom{words: make([]uint64, max(1, (n*10+63)/64))} }

// bloomFrom views a filter's words in a mapped segment.
func bloomFrom(p []byte, words uint32) bloom {
	if words == 0 {
		return bloom{}
	}
	return bloom{words: unsafe.Slice((*uint64)(unsafe.Pointer(&p[0])), words)}
}

func (b bloom) probes(h uint64, f func(bit uint64) bool) bool {
	m := uint64(len(b.words)) * 64
	h1, h2 := h, h>>32|h<<32
	for i := range uint64(bloomProbes) {
		if !f((h1 + i*h2) % m) {
			return false
		}
	}
	return true
}

func (b bloom) add(id string) {
	b.probes(xxhash.Sum64String(id), func(bit uint64) bool { b.words[bit/64] |= 1 << (bit % 64); return true })
}

// mayHold reports whether the id hashed to h may be in the set (a filter without words holds everything).
func (b bloom) mayHold(h uint64) bool {
	if len(b.words) == 0 {
		return true
	}
	return b.probes(h, func(bit uint64) bool { return b.words[bit/64]&(1<<(bit%64)) != 0 })
}

func (b bloom) bytes() []byte {
	out := make([]byte, 0, len(b.words)*8)
	for _, w := range b.words {
		out = binary.LittleEndian.AppendUint64(out, w)
	}
	return out
}
