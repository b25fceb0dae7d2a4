package plugin_test

import (
	"context"
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero"

	"github.com/meshtrace/meshtrace/filter/plugin"
	"github.com/meshtrace/meshtrace/testenv/artifact"
)

// TestTrimmedCallbacksNotImplemented fails when the plugin declares a method whose export the build trims:
// Envoy would never call it.
func TestTrimmedCallbacksNotImplemented(t *testing.T) {
	if got, want := slices.Sorted(maps.Keys(plugin.TrimmedCallbacks())), slices.Sorted(slices.Values(plugin.TrimmedExports)); !slices.Equal(got, want) {
		t.Fatalf("TrimmedCallbacks covers %q, TrimmedExports is %q", got, want)
	}
	trimmed := map[string]string{} // method -> export
	for export, method := range plugin.TrimmedCallbacks() {
		trimmed[method] = export
	}
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	files := 0
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		files++
		for _, d := range f.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok || fn.Recv == nil {
				continue
			}
			if export, ok := trimmed[fn.Name.Name]; ok {
				t.Errorf("%s: method %s is declared, but the build removes its export %s (plugin.TrimmedExports), "+
					"so Envoy never calls it: drop it from TrimmedExports or the method",
					fset.Position(fn.Pos()), fn.Name.Name, export)
			}
		}
	}
	if files == 0 {
		t.Fatal("no source files found")
	}
}

// TestBuildsTrimmed checks that both compiled builds lack the trimmed exports and declare plugin.ABIExport.
func TestBuildsTrimmed(t *testing.T) {
	for _, b := range artifact.Builds(t) {
		t.Run(b.Name, func(t *testing.T) {
			wasm, err := os.ReadFile(b.Path)
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			rt := wazero.NewRuntime(ctx)
			defer rt.Close(ctx)
			m, err := rt.CompileModule(ctx, wasm)
			if err != nil {
				t.Fatal(err)
			}
			exports := m.ExportedFunctions()
			for _, name := range plugin.TrimmedExports {
				if _, ok := exports[name]; ok {
					t.Errorf("%s exports %s: the build was not trimmed (make filter)", b.Path, name)
				}
			}
			if _, ok := exports[plugin.ABIExport]; !ok {
				t.Errorf("%s does not export %s", b.Path, plugin.ABIExport)
			}
			if _, ok := exports[plugin.SDKABIExport]; ok {
				t.Errorf("%s still exports %s", b.Path, plugin.SDKABIExport)
			}
			// The allocator is the plugin's, under the name the host calls.
			if _, ok := exports[plugin.HostAllocExport]; ok {
				t.Errorf("%s exports %s: its allocator was not put in place of the SDK's", b.Path, plugin.HostAllocExport)
			}
			if _, ok := exports[plugin.SDKAllocExport]; !ok {
				t.Errorf("%s exports no %s", b.Path, plugin.SDKAllocExport)
			}
			for _, name := range []string{"proxy_on_request_headers", "proxy_on_log", "proxy_on_new_connection"} {
				if _, ok := exports[name]; !ok {
					t.Errorf("%s lost the export %s", b.Path, name)
				}
			}
		})
	}
}
