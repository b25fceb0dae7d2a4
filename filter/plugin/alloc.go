package plugin

// HostAllocExport is the guest allocator the shipped module exports as proxy_on_memory_allocate (SDKAllocExport)
// in place of the proxy-wasm Go SDK's, renamed by filter/internal/wasmtrim. The host calls it for every buffer it
// copies into the guest (headers, properties, a connection's bytes). It allocates as the SDK's does, except for
// the one copy announced with lendNext, which lands in the plugin's own buffer: copying a Kafka connection's
// bytes in then allocates nothing, where the SDK's allocator made a new buffer of every chunk's size for the
// collector to reclaim (most of what decoding cost under TinyGo's collector, after the decoder's own buffers),
// and neither does the result of a stream's end expression (one guest allocation fewer per HTTP request).
const HostAllocExport = "meshtrace_on_memory_allocate"

// SDKAllocExport is the proxy-wasm Go SDK's allocator export, dropped from the shipped module.
const SDKAllocExport = "proxy_on_memory_allocate"

// maxLent is the largest host copy served from the lent buffer; a larger one is allocated as usual.
const maxLent = 256 << 10

var (
	// lent is where the next host copy goes when it fits; nil when none is announced.
	lent []byte
	// chunk is the buffer lendNext lends, grown up to maxLent.
	chunk []byte
)

//go:wasmexport meshtrace_on_memory_allocate
func onMemoryAllocate(size uint32) *byte {
	if b := lent; size > 0 && int(size) <= cap(b) {
		lent = nil
		return &b[:size][0]
	}
	lent = nil
	buf := make([]byte, max(size, 1)) // the host may ask for 0 bytes; &buf[0] must exist
	return &buf[0]
}

// lendNext announces that the next host copy, of size bytes, may go into the plugin's buffer: the caller
// must be done with the bytes before it calls lendNext again, and must call lendDone right after the host
// call, whether or not the host allocated.
func lendNext(size int) {
	if size > maxLent {
		return
	}
	if cap(chunk) < size {
		chunk = make([]byte, (size+16<<10-1)&^(16<<10-1)) // in 16 KiB steps, so slightly larger copies reuse it
	}
	lent = chunk
}

// lendDone withdraws the buffer lendNext announced, so that no later allocation lands in it.
func lendDone() { lent = nil }
