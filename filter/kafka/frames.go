package kafka

// FramePool keeps the buffers large frames were assembled in, for the next large frame of any connection: a
// frame larger than a stream's own 64 KiB buffer that arrives in pieces needs a buffer of its size, and making
// one per frame (a Java producer's request is often 200 KB, a fetch response up to MaxFrameBytes) is most of
// what decoding costs under TinyGo's collector. Share one FramePool between the decoders of a process (as
// TopicNames); it holds at most its capacity in buffers, each at most the MaxFrameBytes it was asked for, so
// its memory is bounded by capacity x MaxFrameBytes. It is not safe for concurrent use.
type FramePool struct {
	max  int
	free [][]byte
}

// framePoolStep rounds pooled buffers up, so that frames of slightly different sizes share them.
const framePoolStep = 64 << 10

// NewFramePool returns an empty pool that keeps at most capacity buffers (at least 1).
func NewFramePool(capacity int) *FramePool { return &FramePool{max: max(capacity, 1)} }

// Len returns how many buffers the pool holds now.
func (p *FramePool) Len() int { return len(p.free) }

// get returns an empty buffer with room for size bytes: the smallest free one large enough, or a new one.
func (p *FramePool) get(size int) []byte {
	best := -1
	for i, b := range p.free {
		if cap(b) >= size && (best < 0 || cap(b) < cap(p.free[best])) {
			best = i
		}
	}
	if best < 0 {
		return make([]byte, 0, (size+framePoolStep-1)/framePoolStep*framePoolStep)
	}
	b := p.free[best]
	p.free = append(p.free[:best], p.free[best+1:]...)
	return b[:0]
}

// put returns a buffer to the pool; when the pool is full it replaces the smallest buffer if b is larger.
func (p *FramePool) put(b []byte) {
	if len(p.free) < p.max {
		p.free = append(p.free, b[:0])
		return
	}
	small := 0
	for i := range p.free {
		if cap(p.free[i]) < cap(p.free[small]) {
			small = i
		}
	}
	if cap(b) > cap(p.free[small]) {
		p.free[small] = b[:0]
	}
}
