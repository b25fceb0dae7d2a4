//go:build wasm

package main

// proxyGetCurrentTimeNanoseconds is the host clock, which the SDK does not wrap.
//
//go:wasmimport env proxy_get_current_time_nanoseconds
func proxyGetCurrentTimeNanoseconds(returnTime *uint64) uint32
