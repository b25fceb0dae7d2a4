//go:build !wasm

package main

import "time"

// proxyGetCurrentTimeNanoseconds stands in for the host clock outside wasm, so the package vets natively.
func proxyGetCurrentTimeNanoseconds(returnTime *uint64) uint32 {
	*returnTime = uint64(time.Now().UnixNano())
	return 0
}
