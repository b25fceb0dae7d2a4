package wasmhost_test

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/meshtrace/meshtrace/filter/wasmexports"
	"github.com/meshtrace/meshtrace/testenv/wasmhost"
)

// TestMissingCallbacks loads the probe with callback exports removed (and its ABI marker renamed to
// proxy_abi_version_0_2_1, as the filter build does): the host skips a missing callback with Envoy's
// default result instead of failing, but still refuses a module without an allocator or ABI marker.
func TestMissingCallbacks(t *testing.T) {
	abi021 := map[string]string{"proxy_abi_version_0_2_0": "proxy_abi_version_0_2_1"}
	tests := []struct {
		name    string
		drop    []string
		rename  map[string]string // abi021 if nil
		cfg     wasmhost.Config
		check   func(t *testing.T, h *wasmhost.Host)
		wantErr string // from Compile or Load
	}{{
		name: "HTTP callbacks continue",
		drop: []string{"proxy_on_request_body", "proxy_on_request_trailers", "proxy_on_response_headers",
			"proxy_on_response_body", "proxy_on_response_trailers"},
		cfg: wasmhost.Config{PluginConfig: []byte("probe")},
		check: func(t *testing.T, h *wasmhost.Host) {
			s := h.NewHTTPStream(nil)
			continues(t, "RequestHeaders")(s.RequestHeaders([][2]string{{":path", "/a"}, {":method", "POST"}}, false))
			if _, ok := header(s.RequestHeadersNow(), "x-probe-seen"); !ok {
				t.Error("proxy_on_request_headers did not run")
			}
			// The probe pauses a request body that has not ended and upper-cases a whole one.
			continues(t, "RequestBody")(s.RequestBody([]byte("abc"), false))
			continues(t, "RequestBody")(s.RequestBody([]byte("def"), true))
			if got := string(s.RequestBodyNow()); got != "def" {
				t.Errorf("request body = %q, want it untouched", got)
			}
			continues(t, "RequestTrailers")(s.RequestTrailers([][2]string{{"x-t", "1"}}))
			continues(t, "ResponseHeaders")(s.ResponseHeaders([][2]string{{":status", "200"}}, false))
			if _, ok := header(s.ResponseHeadersNow(), "x-probe-status"); ok {
				t.Error("proxy_on_response_headers ran")
			}
			continues(t, "ResponseBody")(s.ResponseBody([]byte("x"), true))
			if got := string(s.ResponseBodyNow()); got != "x" {
				t.Errorf("response body = %q, want it untouched", got)
			}
			continues(t, "ResponseTrailers")(s.ResponseTrailers([][2]string{{"x-t", "1"}}))
			if _, ok := header(s.ResponseTrailersNow(), "x-probe-trailer"); ok {
				t.Error("proxy_on_response_trailers ran")
			}
			if err := s.Complete(); err != nil {
				t.Fatal(err)
			}
			if n := h.LiveContexts(); n != 1 {
				t.Errorf("live contexts = %d, want the root only", n)
			}
			noProblems(t, h)
		},
	}, {
		// The probe rejects the VM configuration "fail" in proxy_on_vm_start.
		name: "root callbacks succeed",
		drop: []string{"proxy_on_vm_start", "proxy_on_configure", "proxy_on_done"},
		cfg:  wasmhost.Config{VMConfig: []byte("fail"), PluginConfig: []byte("drain")},
		check: func(t *testing.T, h *wasmhost.Host) {
			if finished, err := h.Done(); err != nil || !finished {
				t.Errorf("Done = %v, %v; want finished", finished, err)
			}
		},
	}, {
		name: "notifications skipped",
		drop: []string{"proxy_on_tick", "proxy_on_queue_ready", "proxy_on_http_call_response"},
		check: func(t *testing.T, h *wasmhost.Host) {
			if err := h.Tick(); err != nil {
				t.Fatal(err)
			}
			if calls := h.PendingHTTPCalls(); len(calls) != 0 {
				t.Errorf("pending calls %v: proxy_on_tick ran", calls)
			}
		},
	}, {
		name: "stream end callbacks skipped",
		drop: []string{"proxy_on_log", "proxy_on_delete"},
		check: func(t *testing.T, h *wasmhost.Host) {
			s := h.NewHTTPStream(nil)
			continues(t, "RequestHeaders")(s.RequestHeaders([][2]string{{":path", "/a"}}, true))
			if err := s.Complete(); err != nil {
				t.Fatal(err)
			}
		},
	}, {
		name: "network callbacks continue",
		drop: []string{"proxy_on_new_connection", "proxy_on_downstream_data", "proxy_on_upstream_data",
			"proxy_on_downstream_connection_close", "proxy_on_upstream_connection_close"},
		cfg: wasmhost.Config{PluginConfig: []byte("network")},
		check: func(t *testing.T, h *wasmhost.Host) {
			c, a, err := h.NewConnection(nil)
			continues(t, "NewConnection")(a, err)
			continues(t, "DownstreamData")(c.DownstreamData([]byte("ab"), false))
			if got := string(c.DownstreamDataNow()); got != "ab" {
				t.Errorf("downstream data = %q, want it untouched", got)
			}
			continues(t, "UpstreamData")(c.UpstreamData([]byte("cd"), true))
			if got := string(c.UpstreamDataNow()); got != "cd" {
				t.Errorf("upstream data = %q, want it untouched", got)
			}
			if err := c.Close(wasmhost.PeerRemote); err != nil {
				t.Fatal(err)
			}
		},
	}, {
		name:    "no allocator",
		drop:    []string{"proxy_on_memory_allocate", "malloc"},
		wantErr: "not a proxy-wasm plugin",
	}, {
		name:    "no ABI marker",
		drop:    []string{"proxy_abi_version_0_2_0"},
		rename:  map[string]string{},
		wantErr: "unsupported ABI",
	}, {
		name:   "ABI 0.2.0 still accepted",
		rename: map[string]string{},
		check:  func(t *testing.T, h *wasmhost.Host) { noProblems(t, h) },
	}}
	for _, b := range probeBuilds {
		t.Run(b.Name, func(t *testing.T) {
			wasm, err := os.ReadFile(b.Path)
			if err != nil {
				t.Fatal(err)
			}
			exports, err := wasmexports.List(wasm)
			if err != nil {
				t.Fatal(err)
			}
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					edit := wasmexports.Edit{Rename: tc.rename}
					if edit.Rename == nil {
						edit.Rename = abi021
					}
					for _, name := range tc.drop {
						if wasmexports.Has(exports, name) || name != "malloc" { // malloc: only where the build has one
							edit.Drop = append(edit.Drop, name)
						}
					}
					variant, err := wasmexports.Rewrite(wasm, edit)
					if err != nil {
						t.Fatal(err)
					}
					h, err := wasmhost.Load(context.Background(), variant, tc.cfg)
					if tc.wantErr != "" {
						if err == nil {
							h.Close(context.Background())
						}
						if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
							t.Fatalf("Load error = %v, want %q", err, tc.wantErr)
						}
						return
					}
					if err != nil {
						t.Fatalf("Load: %v", err)
					}
					defer func() {
						if err := h.Close(context.Background()); err != nil {
							t.Errorf("Close: %v", err)
						}
					}()
					tc.check(t, h)
				})
			}
		})
	}
}

// continues returns a check that fails the test unless the callback what continued without error.
func continues(t *testing.T, what string) func(wasmhost.Action, error) {
	return func(a wasmhost.Action, err error) {
		t.Helper()
		if err != nil || a != wasmhost.ActionContinue {
			t.Fatalf("%s = %v, %v; want Continue", what, a, err)
		}
	}
}
