// Command wasmtrim post-processes a compiled filter build in place:
//
//	go run ./filter/internal/wasmtrim FILE
//
// It removes the exports of the HTTP callbacks the plugin leaves to the proxy-wasm Go SDK's no-op
// defaults (plugin.TrimmedExports), so Envoy skips them instead of entering the VM for nothing, and renames
// the SDK's ABI marker proxy_abi_version_0_2_0 to plugin.ABIExport (proxy_abi_version_0_2_1), and puts the
// plugin's allocator (plugin.HostAllocExport), when the module has it, in place of the SDK's
// proxy_on_memory_allocate. Everything
// else in the module is left byte for byte. The new file is written next to FILE and renamed over it.
//
// It refuses, exiting 1 and leaving FILE untouched, when FILE is not a WebAssembly module, is truncated,
// has no export section, lacks one of the exports to remove or the SDK's ABI marker, or exports one of
// those names as something other than a function.
//
// On a file it already trimmed (it exports plugin.ABIExport and none of the names to remove or rename, other
// than the allocator's new name)
// it is a no-op and says so; a file in any other state, such as trimmed in part, is refused.
package main

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/meshtrace/meshtrace/filter/plugin"
	"github.com/meshtrace/meshtrace/filter/wasmexports"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: wasmtrim FILE.wasm")
		os.Exit(2)
	}
	msg, err := trimFile(os.Args[1])
	if err != nil {
		fmt.Fprintf(os.Stderr, "wasmtrim: %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
	fmt.Printf("wasmtrim: %s: %s\n", os.Args[1], msg)
}

// edit is the rewrite a build gets: the filter's (which exports plugin.HostAllocExport) has its allocator put in
// place of the SDK's; an SDK-only module (the price list's do-nothing plugin) keeps the SDK's.
func edit(exports []wasmexports.Export) wasmexports.Edit {
	e := wasmexports.Edit{
		Drop:   plugin.TrimmedExports,
		Rename: map[string]string{plugin.SDKABIExport: plugin.ABIExport},
	}
	if wasmexports.Has(exports, plugin.HostAllocExport) {
		e.Drop = append(slices.Clone(e.Drop), plugin.SDKAllocExport)
		e.Rename[plugin.HostAllocExport] = plugin.SDKAllocExport
	}
	return e
}

// trimmed reports whether exports are already the result of edit: ABIExport present, and none of the
// names edit removes or renames.
func trimmed(exports []wasmexports.Export) bool {
	if !wasmexports.Has(exports, plugin.ABIExport) || wasmexports.Has(exports, plugin.SDKABIExport) ||
		wasmexports.Has(exports, plugin.HostAllocExport) {
		return false
	}
	for _, name := range plugin.TrimmedExports {
		if wasmexports.Has(exports, name) {
			return false
		}
	}
	return true
}

// trim applies edit to a module and returns the edit it made; changed is false when it was already trimmed
// (out is then wasm).
func trim(wasm []byte) (out []byte, e wasmexports.Edit, changed bool, err error) {
	exports, err := wasmexports.List(wasm)
	if err != nil {
		return nil, e, false, err
	}
	if trimmed(exports) {
		return wasm, e, false, nil
	}
	e = edit(exports)
	if out, err = wasmexports.Rewrite(wasm, e); err != nil {
		return nil, e, false, err
	}
	return out, e, true, nil
}

// trimFile rewrites path in place (a temporary file in the same directory, renamed over it).
func trimFile(path string) (string, error) {
	wasm, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	out, e, changed, err := trim(wasm)
	if err != nil {
		return "", err
	}
	if !changed {
		return "already trimmed, left as it is", nil
	}
	info, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return "", err
	}
	_, err = tmp.Write(out)
	err = errors.Join(err, tmp.Chmod(info.Mode().Perm()), tmp.Close())
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return "", err
	}
	var renamed []string
	for _, from := range slices.Sorted(maps.Keys(e.Rename)) {
		renamed = append(renamed, from+" to "+e.Rename[from])
	}
	return fmt.Sprintf("removed %s, renamed %s (%d -> %d bytes)",
		strings.Join(e.Drop, ", "), strings.Join(renamed, ", "), len(wasm), len(out)), nil
}
