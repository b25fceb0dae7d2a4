//go:build tinygo.wasm

package policy

import "unsafe"

// lookupEnv reads the Wasm VM's environment (in Envoy: vm_config.environment_variables) straight from
// WASI environ_sizes_get and environ_get, into Go memory. TinyGo's os.LookupEnv calls wasi-libc's getenv,
// which sets up the environment with libc's malloc: the filter is built with -tags custommalloc (no TinyGo
// malloc export, see scripts/tinygo-build.sh), so that links wasi-libc's dlmalloc, whose sbrk grows the
// same linear memory TinyGo's garbage-collected heap owns, and the two heaps corrupt each other (seen as
// out-of-bounds accesses and slice panics a few requests after the plugin read hmac_key_env).
// TestTinyGoBuildLinksNoLibcMalloc guards against the allocator coming back.
func lookupEnv(name string) (string, bool) {
	var count, size uint32
	if environSizesGet(unsafe.Pointer(&count), unsafe.Pointer(&size)) != 0 || count == 0 || size == 0 {
		return "", false
	}
	ptrs := make([]uint32, count) // wasm32 pointers into buf, unused: the strings are laid out in order
	buf := make([]byte, size)
	if environGet(unsafe.Pointer(&ptrs[0]), unsafe.Pointer(&buf[0])) != 0 {
		return "", false
	}
	return findEnv(buf, name)
}

//go:wasmimport wasi_snapshot_preview1 environ_sizes_get
func environSizesGet(count, size unsafe.Pointer) uint32

//go:wasmimport wasi_snapshot_preview1 environ_get
func environGet(environ, environBuf unsafe.Pointer) uint32
