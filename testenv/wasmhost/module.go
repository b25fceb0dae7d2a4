package wasmhost

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// Module is a compiled plugin. Compile once, then Load as many independent instances (VMs) as needed;
// a Module is safe for concurrent use, each Host is not.
type Module struct {
	rt       wazero.Runtime
	compiled wazero.CompiledModule
	start    []string // "_initialize" (reactor) or "_start" (command), whichever the module exports
}

var (
	cacheOnce sync.Once
	cache     wazero.CompilationCache
)

// compilationCache is shared by every Module of the process, so loading the same bytes again skips
// compilation; it lives on disk under the user cache directory when there is one, so test binaries
// share it too.
func compilationCache() wazero.CompilationCache {
	cacheOnce.Do(func() {
		if dir, err := os.UserCacheDir(); err == nil {
			if c, err := wazero.NewCompilationCacheWithDir(filepath.Join(dir, "meshtrace", "wazero")); err == nil {
				cache = c
				return
			}
		}
		cache = wazero.NewCompilationCache()
	})
	return cache
}

// allocExports are the guest allocators Envoy (proxy-wasm-cpp-host) accepts, one of which a plugin must
// export: the host hands it memory through them. Every callback export is optional, as in Envoy (see
// Host.call).
var allocExports = []string{"malloc", "proxy_on_memory_allocate"}

// abiVersions are the ABI version markers this host accepts (one must be exported).
var abiVersions = []string{"proxy_abi_version_0_2_0", "proxy_abi_version_0_2_1"}

// Compile compiles a proxy-wasm plugin and links it with WASI and the proxy-wasm host functions.
func Compile(ctx context.Context, wasm []byte) (*Module, error) {
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCompilationCache(compilationCache()))
	m, err := compile(ctx, rt, wasm)
	if err != nil {
		return nil, errors.Join(err, rt.Close(ctx))
	}
	return m, nil
}

func compile(ctx context.Context, rt wazero.Runtime, wasm []byte) (*Module, error) {
	compiled, err := rt.CompileModule(ctx, wasm)
	if err != nil {
		return nil, fmt.Errorf("wasmhost: compile: %w", err)
	}
	exports := compiled.ExportedFunctions()
	if !hasAny(exports, allocExports) {
		return nil, fmt.Errorf("wasmhost: not a proxy-wasm plugin: it exports neither %q nor %q", allocExports[1], allocExports[0])
	}
	if !hasAny(exports, abiVersions) {
		return nil, fmt.Errorf("wasmhost: unsupported ABI: the module exports none of %v", abiVersions)
	}
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, rt); err != nil {
		return nil, fmt.Errorf("wasmhost: WASI: %w", err)
	}
	if _, err := envModule(rt, compiled.ImportedFunctions()).Instantiate(ctx); err != nil {
		return nil, fmt.Errorf("wasmhost: host functions: %w", err)
	}
	m := &Module{rt: rt, compiled: compiled}
	for _, name := range []string{"_initialize", "_start"} {
		if _, ok := exports[name]; ok {
			m.start = []string{name}
			break
		}
	}
	return m, nil
}

func hasAny(exports map[string]api.FunctionDefinition, names []string) bool {
	for _, n := range names {
		if _, ok := exports[n]; ok {
			return true
		}
	}
	return false
}

// Close releases the compiled code and every Host loaded from the module.
func (m *Module) Close(ctx context.Context) error {
	return m.rt.Close(ctx)
}

// Load compiles wasm and loads one instance; Close on the Host also releases the compiled module.
// Use Compile and Module.Load to instantiate a plugin many times.
func Load(ctx context.Context, wasm []byte, cfg Config) (*Host, error) {
	m, err := Compile(ctx, wasm)
	if err != nil {
		return nil, err
	}
	h, err := m.Load(ctx, cfg)
	if err != nil {
		return nil, errors.Join(err, m.Close(ctx))
	}
	h.owned = m
	return h, nil
}
