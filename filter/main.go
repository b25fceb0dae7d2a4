// Command filter is the meshtrace proxy-wasm plugin: it records one span per HTTP stream (and per TCP
// connection), tags it from request data by policy, and exports OTLP to the meshtrace indexer. Build it for
// wasm (TinyGo or GOOS=wasip1 -buildmode=c-shared); the logic lives in package plugin.
package main

import (
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"

	"github.com/meshtrace/meshtrace/filter/plugin"
)

func init() { proxywasm.SetVMContext(plugin.NewVMContext()) }

func main() {}
