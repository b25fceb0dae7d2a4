package e2e

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/indexer/document"
	"github.com/meshtrace/meshtrace/testenv/artifact"
	"github.com/meshtrace/meshtrace/testenv/envoy"
)

// TestStreamEnd checks, in Envoy, what the filter reads at the end of a stream: on a proxied request all
// of it comes from one evaluation of a CEL expression (expr_evaluate), which the plugin logs when it
// first uses it; a local reply has no cluster and no upstream, so that evaluation fails and the stream is
// read one value at a time. Both spans must carry the same attributes either way.
func TestStreamEnd(t *testing.T) {
	for _, build := range artifact.Builds(t) {
		t.Run(build.Name, func(t *testing.T) {
			col := newCollector(t, nil)
			app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) }))
			t.Cleanup(app.Close)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			wasm := &envoy.Wasm{Name: "meshtrace", VMID: "meshtrace", File: build.Path, Config: policy("inbound", "")}
			p, err := envoy.Start(ctx, envoy.Bootstrap{
				Listeners: []envoy.Listener{
					{Name: "proxied", Direction: envoy.Inbound, Cluster: "inbound|8080||", Wasm: wasm},
					{Name: "local", Direction: envoy.Inbound, Direct: &envoy.DirectResponse{Status: 503, Body: "no"}, Wasm: wasm},
				},
				Clusters: []envoy.Cluster{
					{Name: "inbound|8080||", Address: app.Listener.Addr().String()},
					{Name: "outbound|4318||meshtrace-indexer.meshtrace.svc.cluster.local", Address: col.Addr()},
				},
			}, envoy.Options{Dir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("--- envoy.log (tail) ---\n%s", p.LogTail(30))
				}
				p.Close()
			})
			for _, c := range []struct {
				listener, path string
				status         int
			}{{"proxied", "/proxied", 200}, {"local", "/local", 503}} {
				addr, err := p.ListenerAddr(ctx, c.listener)
				if err != nil {
					t.Fatal(err)
				}
				req, _ := http.NewRequest(http.MethodGet, "http://"+addr+c.path, nil)
				req.Header.Set("Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
				resp, err := client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != c.status {
					t.Fatalf("%s: status %d, want %d", c.path, resp.StatusCode, c.status)
				}
			}
			var spans []document.Span
			if !waitFor(10*time.Second, func() bool { spans = col.Spans(); return len(spans) == 2 }) {
				t.Fatalf("%d spans exported, want 2: %s", len(spans), describe(spans))
			}
			byPath := map[string]document.Span{}
			for _, s := range spans {
				byPath[s.Attr["url.path"].(string)] = s
			}
			proxied, local := byPath["/proxied"], byPath["/local"]
			for k, want := range map[string]string{
				"http.response.status_code": "200", "envoy.upstream.cluster": "inbound|8080||",
				"network.peer.address": "127.0.0.1", "client.address": "127.0.0.1",
			} {
				checkAttr(t, proxied, k, want)
			}
			if proxied.Error || proxied.Attr["envoy.response_code_details"] != nil || proxied.Attr["envoy.response_flags"] != nil {
				t.Errorf("proxied span: error %v, attributes %v", proxied.Error, proxied.Attr)
			}
			for k, want := range map[string]string{
				"http.response.status_code": "503", "envoy.response_code_details": "direct_response",
				"network.peer.address": "127.0.0.1", "client.address": "127.0.0.1",
			} {
				checkAttr(t, local, k, want)
			}
			if !local.Error || local.Attr["envoy.upstream.cluster"] != nil {
				t.Errorf("local reply span: error %v, attributes %v", local.Error, local.Attr)
			}
			// Each span joined the incoming trace: the trace context was read back at the end of the stream.
			for _, s := range spans {
				if s.TraceID != "4bf92f3577b34da6a3ce929d0e0e4736" || s.ParentSpanID != "00f067aa0ba902b7" {
					t.Errorf("span %s: trace %s parent %s", s.Attr["url.path"], s.TraceID, s.ParentSpanID)
				}
			}
			if log := p.Log(); !strings.Contains(log, "reading the end of each stream with one expression") ||
				strings.Contains(log, "one value at a time") {
				t.Errorf("the filter did not read the stream end with one expression:\n%s", p.LogTail(30))
			}
		})
	}
}
