//go:build wasm

package policy

import "github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"

// logWarning writes msg to the proxy's log at warn level (in the plugin, Parse runs in proxy_on_configure,
// where logging is allowed).
func logWarning(msg string) { proxywasm.LogWarn(msg) }
