//go:build !wasm

package plugin

import "time"

// hostNow returns the wall clock in Unix nanoseconds; native builds (unit tests) have no proxy host.
func hostNow() uint64 { return uint64(time.Now().UnixNano()) }
