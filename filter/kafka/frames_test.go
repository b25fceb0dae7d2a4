package kafka

import "testing"

// TestFramePool checks the pool's choices: the smallest free buffer that fits, a new one rounded up to 64 KiB
// when none does, and, once full, a larger buffer kept in place of the smallest.
func TestFramePool(t *testing.T) {
	p := NewFramePool(2)
	a := p.get(100 << 10)
	if cap(a) != 128<<10 || len(a) != 0 {
		t.Fatalf("new buffer: len %d cap %d, want 0 and 128 KiB", len(a), cap(a))
	}
	b := p.get(300 << 10)
	p.put(a)
	p.put(b)
	if got := p.get(90 << 10); cap(got) != 128<<10 {
		t.Errorf("get(90 KiB) took a buffer of %d, want the smallest that fits (128 KiB)", cap(got))
	} else {
		p.put(got)
	}
	if got := p.get(200 << 10); cap(got) != 320<<10 {
		t.Errorf("get(200 KiB) took %d, want the 320 KiB one", cap(got))
	} else {
		p.put(got)
	}
	p.put(make([]byte, 0, 64<<10)) // full, and smaller than both: dropped
	p.put(make([]byte, 0, 1<<20))  // full, larger than the smallest: replaces it
	if p.Len() != 2 {
		t.Fatalf("pool holds %d buffers, want at most 2", p.Len())
	}
	var caps []int
	for p.Len() > 0 {
		caps = append(caps, cap(p.get(1)))
	}
	if len(caps) != 2 || caps[0]+caps[1] != 320<<10+1<<20 {
		t.Errorf("pool kept buffers of %v, want 320 KiB and 1 MiB", caps)
	}
}
