//go:build !tinygo.wasm

package policy

import "os"

// lookupEnv reads the process environment: natively the test's or tool's, in the Go wasip1 build the Wasm
// VM's (Go's runtime copies it from WASI environ_get at start, into Go memory). See env_tinygo.go for why
// the TinyGo build does not use os.LookupEnv.
func lookupEnv(name string) (string, bool) { return os.LookupEnv(name) }
