// Package hosttest provides test helpers for running plugin builds on the wasmhost proxy-wasm host.
package hosttest

import (
	"context"
	"os"
	"sync"
	"testing"

	"github.com/meshtrace/meshtrace/testenv/artifact"
	"github.com/meshtrace/meshtrace/testenv/wasmhost"
)

var (
	mu      sync.Mutex
	modules = map[string]*wasmhost.Module{}
)

// Module returns build b compiled for the host, compiling each path once per test binary; it fails tb if the
// file cannot be read or compiled. The Module is shared by every caller and lives as long as the process:
// callers Load instances from it and never Close it.
func Module(tb testing.TB, b artifact.Build) *wasmhost.Module {
	tb.Helper()
	mu.Lock()
	defer mu.Unlock()
	if m, ok := modules[b.Path]; ok {
		return m
	}
	wasm, err := os.ReadFile(b.Path)
	if err != nil {
		tb.Fatal(err)
	}
	m, err := wasmhost.Compile(context.Background(), wasm)
	if err != nil {
		tb.Fatalf("compile %s: %v", b.Name, err)
	}
	modules[b.Path] = m
	return m
}
