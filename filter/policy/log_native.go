//go:build !wasm

package policy

import "github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"

// logWarning writes msg to the proxy's log at warn level when the code runs natively under the SDK's host
// emulator (proxytest), as the plugin's native tests run it. Elsewhere natively (tools validating a policy)
// there is no host: the SDK's host call then panics on its nil host, which is recovered, and the warning
// stays in Policy.Warnings only.
func logWarning(msg string) {
	defer func() { _ = recover() }()
	proxywasm.LogWarn(msg)
}
