package wasmhost_test

import (
	"io"
	"log"
	"os"
	"testing"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/proxytest"

	"github.com/meshtrace/meshtrace/testenv/wasmhost"
	"github.com/meshtrace/meshtrace/testenv/wasmhost/hosttest"
)

var (
	benchRequest = [][2]string{
		{":method", "GET"}, {":path", "/api/v1/items?id=42"}, {":authority", "shop.example.com"},
		{"user-agent", "bench/1.0"}, {"x-replace", "a"}, {"x-remove", "b"},
	}
	benchResponse = [][2]string{{":status", "200"}, {"content-type", "application/json"}}
)

// BenchmarkHTTPRequest runs one full HTTP stream through the probe: context creation, request headers
// (get, add, get, replace and remove a header, and a refused response-header read), response headers
// (header reads, a property read, two adds), proxy_on_log (two header reads, a histogram sample, a gauge
// update), proxy_on_done and proxy_on_delete. The proxytest sub-benchmarks run the same stream through
// the SDK's proxytest.NewWasmVMContext for a side-by-side ratio (it skips proxy_on_delete in the guest).
// Run both with -bench 'HTTPRequest'; 'HTTPRequest/(tinygo|go)$' selects this host only.
// guest-MiB is the guest memory after the run: it must not grow with b.N.
func BenchmarkHTTPRequest(b *testing.B) {
	props := map[string][]byte{"response.code": []byte("200")}
	for _, build := range probeBuilds {
		b.Run(build.Name, func(b *testing.B) {
			h := load(b, hosttest.Module(b, build), wasmhost.Config{LogLevel: wasmhost.LogWarn})
			b.ReportAllocs()
			for b.Loop() {
				s := h.NewHTTPStream(props)
				if _, err := s.RequestHeaders(benchRequest, true); err != nil {
					b.Fatal(err)
				}
				if _, err := s.ResponseHeaders(benchResponse, true); err != nil {
					b.Fatal(err)
				}
				if err := s.Complete(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(h.MemoryBytes())/(1<<20), "guest-MiB")
			if n := h.LiveContexts(); n != 1 {
				b.Fatalf("LiveContexts = %d after the run", n)
			}
		})
	}
	b.Run("proxytest", func(b *testing.B) {
		// proxytest prints every plugin log line through the log package; keep that out of the timing.
		log.SetOutput(io.Discard)
		defer log.SetOutput(os.Stderr)
		for _, build := range probeBuilds {
			b.Run(build.Name, func(b *testing.B) { benchProxytest(b, build.Path) })
		}
	})
}

func benchProxytest(b *testing.B, path string) {
	wasm, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	vm, err := proxytest.NewWasmVMContext(wasm)
	if err != nil {
		b.Fatal(err)
	}
	defer vm.Close()
	host, reset := proxytest.NewHostEmulator(proxytest.NewEmulatorOption().WithVMContext(vm))
	defer reset()
	if host.StartVM() != true || host.StartPlugin() != true {
		b.Fatal("proxytest: plugin start failed")
	}
	b.ReportAllocs()
	for b.Loop() {
		id := host.InitializeHttpContext()
		host.CallOnRequestHeaders(id, benchRequest, true)
		host.CallOnResponseHeaders(id, benchResponse, true)
		host.CompleteHttpContext(id)
	}
}

// BenchmarkLoad measures instantiating a compiled module and starting its root context, the cost each
// test pays per Host.
func BenchmarkLoad(b *testing.B) {
	for _, build := range probeBuilds {
		b.Run(build.Name, func(b *testing.B) {
			m := hosttest.Module(b, build)
			b.ReportAllocs()
			for b.Loop() {
				h, err := m.Load(b.Context(), wasmhost.Config{})
				if err != nil {
					b.Fatal(err)
				}
				if err := h.Close(b.Context()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
