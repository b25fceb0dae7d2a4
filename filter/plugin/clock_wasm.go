//go:build wasm

package plugin

//go:wasmimport env proxy_get_current_time_nanoseconds
func proxyGetCurrentTimeNanoseconds(returnTime *uint64) uint32

// hostNow returns the host clock (proxy_get_current_time_nanoseconds) in Unix nanoseconds.
func hostNow() uint64 {
	var t uint64
	proxyGetCurrentTimeNanoseconds(&t)
	return t
}
