package main

import (
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/meshtrace/meshtrace/filter/plugin"
	"github.com/meshtrace/meshtrace/filter/wasmexports"
	"github.com/meshtrace/meshtrace/testenv/artifact"
)

// functionExports returns the names of wasm's function exports, as wasmexports reads them (its own tests
// check that reading against wazero's).
func functionExports(t *testing.T, wasm []byte) map[string]bool {
	t.Helper()
	exports, err := wasmexports.List(wasm)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, e := range exports {
		if e.Kind == wasmexports.KindFunc {
			names[e.Name] = true
		}
	}
	return names
}

// TestTrimSDKBuilds trims the bench-envoy price-list plugin (the SDK's exports and none of its own), built
// with TinyGo and Go: the trimmed callbacks are gone, the ABI marker renamed, every other export kept; a
// second run is a no-op.
func TestTrimSDKBuilds(t *testing.T) {
	builds, err := artifact.BuildPlugin("./testenv/envoy/cmd/bench-envoy/pricelist", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range builds {
		t.Run(b.Name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "plugin.wasm")
			orig, err := os.ReadFile(b.Path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, orig, 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := trimFile(path); err != nil {
				t.Fatal(err)
			}
			out, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			want := functionExports(t, orig)
			for _, name := range plugin.TrimmedExports {
				if !want[name] {
					t.Fatalf("the SDK build does not export %s", name)
				}
				delete(want, name)
			}
			if !want[plugin.SDKABIExport] {
				t.Fatalf("the SDK build does not export %s", plugin.SDKABIExport)
			}
			delete(want, plugin.SDKABIExport)
			want[plugin.ABIExport] = true
			if got := functionExports(t, out); !maps.Equal(got, want) {
				t.Errorf("exports after the trim:\n got %v\nwant %v", slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want)))
			}

			msg, err := trimFile(path)
			if err != nil || !strings.Contains(msg, "already trimmed") {
				t.Errorf("second run = %q, %v; want a no-op", msg, err)
			}
			if again, _ := os.ReadFile(path); !slices.Equal(again, out) {
				t.Error("second run changed the file")
			}
		})
	}
}

// TestTrimSwapsAllocator trims a module that exports the plugin's allocator: it takes the SDK's name, the
// SDK's export is gone, and the rest is trimmed as usual; a second run is a no-op.
func TestTrimSwapsAllocator(t *testing.T) {
	exports := append([]string{plugin.SDKAllocExport, plugin.HostAllocExport, plugin.SDKABIExport, "proxy_on_log"}, plugin.TrimmedExports...)
	out, _, changed, err := trim(module(exports...))
	if err != nil || !changed {
		t.Fatalf("trim: changed %v, %v", changed, err)
	}
	got := functionExports(t, out)
	want := map[string]bool{plugin.SDKAllocExport: true, plugin.ABIExport: true, "proxy_on_log": true}
	if !maps.Equal(got, want) {
		t.Fatalf("exports %v, want %v", slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want)))
	}
	// The SDK's allocator was function 0, the plugin's function 1: the name now points at function 1.
	list, err := wasmexports.List(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range list {
		if x.Name == plugin.SDKAllocExport && x.Index != 1 {
			t.Errorf("%s exports function %d, want the plugin's (1)", x.Name, x.Index)
		}
	}
	if again, _, changed, err := trim(out); err != nil || changed || !slices.Equal(again, out) {
		t.Errorf("second trim: changed %v, %v", changed, err)
	}
}

func TestTrimRefuses(t *testing.T) {
	exports := append([]string{"proxy_on_memory_allocate", plugin.SDKABIExport}, plugin.TrimmedExports...)
	partial, err := wasmexports.Rewrite(module(exports...), wasmexports.Edit{Drop: plugin.TrimmedExports[:1]})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		wasm []byte
		want string
	}{
		{"not wasm", []byte("not a module"), "not a WebAssembly module"},
		{"truncated", module(exports...)[:40], "truncated"},
		{"no export section", []byte("\x00asm\x01\x00\x00\x00"), "no export section"},
		{"trimmed export missing", partial, `cannot drop "` + plugin.TrimmedExports[0] + `"`},
		{"no ABI marker", module(slices.Delete(slices.Clone(exports), 1, 2)...), `cannot rename "` + plugin.SDKABIExport + `"`},
		{"both ABI markers", module(append(slices.Clone(exports), plugin.ABIExport)...), `exports "` + plugin.ABIExport + `" twice`},
		{"not a function", moduleWithGlobal(exports, plugin.TrimmedExports[1]), "not a function"},
		{"the plugin's allocator but not the SDK's", module(append(slices.Clone(exports[1:]), plugin.HostAllocExport)...),
			`cannot drop "` + plugin.SDKAllocExport + `"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "plugin.wasm")
			if err := os.WriteFile(path, tc.wasm, 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := trimFile(path); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %v, want %q", err, tc.want)
			}
			if got, _ := os.ReadFile(path); !slices.Equal(got, tc.wasm) {
				t.Error("a refused file was changed")
			}
			if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
				t.Errorf("temporary files left: %v", entries)
			}
		})
	}
}

// module assembles a module exporting a function () -> () under each name.
func module(names ...string) []byte {
	return moduleWithGlobal(names, "")
}

// moduleWithGlobal is module with global, if not empty, exported as a global instead of a function.
func moduleWithGlobal(names []string, global string) []byte {
	var funcs []string
	for _, n := range names {
		if n != global {
			funcs = append(funcs, n)
		}
	}
	sec := func(b []byte, id byte, payload []byte) []byte {
		return append(uleb(append(b, id), len(payload)), payload...)
	}
	b := []byte("\x00asm\x01\x00\x00\x00")
	b = sec(b, 1, []byte{1, 0x60, 0, 0})
	b = sec(b, 3, append(uleb(nil, len(funcs)), make([]byte, len(funcs))...))
	if global != "" {
		b = sec(b, 6, []byte{1, 0x7f, 0, 0x41, 0, 0x0b}) // one immutable i32 global = 0
	}
	exp := uleb(nil, len(names))
	fi := 0
	for _, n := range names {
		exp = append(uleb(exp, len(n)), n...)
		if n == global {
			exp = append(exp, 3, 0)
			continue
		}
		exp = uleb(append(exp, 0), fi)
		fi++
	}
	b = sec(b, 7, exp)
	code := uleb(nil, len(funcs))
	for range funcs {
		code = append(code, 2, 0, 0x0b)
	}
	return sec(b, 10, code)
}

func uleb(b []byte, v int) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}
