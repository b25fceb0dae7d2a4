package deploy_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/meshtrace/meshtrace/filter/policy"
	"github.com/meshtrace/meshtrace/testenv/artifact"
	"github.com/meshtrace/meshtrace/testenv/envoy"
	"github.com/meshtrace/meshtrace/wasmplugin/manifest"
	"github.com/meshtrace/meshtrace/wasmplugin/manifest/manifesttest"
)

// TestDeployedPoliciesInEnvoy runs the shipped filter in a real Envoy with the plugin configuration each
// overlay deploys (as the proxy receives it: the WasmPlugin's pluginConfig as JSON, or the Gloo filter's
// StringValue), behind a cluster named exactly as the policy's export.cluster, and checks that a tagged
// request arrives as a span at the OTLP receiver standing in for that cluster.
func TestDeployedPoliciesInEnvoy(t *testing.T) {
	v := manifesttest.Validator(t)
	plugin := artifact.Builds(t)[0] // the shipped TinyGo build
	cases := []struct {
		overlay   string
		kind      string // object carrying the configuration
		name      string
		direction envoy.Direction
	}{
		{"overlays/istio", "WasmPlugin", "meshtrace-http-inbound", envoy.Inbound},
		{"overlays/istio", "WasmPlugin", "meshtrace-http-outbound", envoy.Outbound},
		{"overlays/telemetry", "WasmPlugin", "meshtrace-http-inbound", envoy.Inbound},
		{"overlays/scale-out", "WasmPlugin", "meshtrace-http-outbound", envoy.Outbound},
		{"overlays/gloo", "Gateway", "gateway-proxy", envoy.Unspecified},
	}
	for _, tc := range cases {
		t.Run(tc.overlay+"/"+tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := pluginConfig(t, build(t, v, tc.overlay), tc.kind, tc.name)
			pol, err := policy.Parse(cfg)
			if err != nil {
				t.Fatal(err)
			}
			rx := newReceiver(t)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			// In trace mode envoy the filter makes no HTTP span: what it does shows on the request the
			// upstream receives (the header Envoy's custom tag reads, the baggage).
			envoyMode := pol.Trace.Mode == policy.TraceModeEnvoy
			listener := envoy.Listener{Name: "http", Direction: tc.direction,
				Direct: &envoy.DirectResponse{Status: 200, Body: "ok"},
				Wasm:   &envoy.Wasm{Name: "meshtrace", VMID: "meshtrace", File: plugin.Path, Config: string(cfg), FailOpen: true}}
			clusters := []envoy.Cluster{{Name: pol.Export.Cluster, Address: rx.addr()}}
			upstream := make(chan http.Header, 1)
			if envoyMode {
				app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					select {
					case upstream <- r.Header.Clone():
					default:
					}
				}))
				defer app.Close()
				listener.Direct, listener.Cluster = nil, "app"
				clusters = append(clusters, envoy.Cluster{Name: "app", Address: strings.TrimPrefix(app.URL, "http://")})
			}
			p, err := envoy.Start(ctx, envoy.Bootstrap{
				Node: envoy.Node{ID: "sidecar~10.0.0.7~checkout-1.shop~shop.svc.cluster.local", Cluster: "checkout.shop",
					Metadata: map[string]any{"NAMESPACE": "shop", "WORKLOAD_NAME": "checkout", "LABELS": map[string]string{"app": "checkout"}}},
				Listeners: []envoy.Listener{listener},
				Clusters:  clusters,
			}, envoy.Options{Dir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				if t.Failed() {
					t.Logf("envoy.log (tail):\n%s", p.LogTail(30))
				}
				if err := p.Close(); err != nil {
					t.Error(err)
				}
			}()
			addr, err := p.ListenerAddr(ctx, "http")
			if err != nil {
				t.Fatal(err)
			}
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/orders", nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("x-customer-id", "cust-42")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if envoyMode {
				h := <-upstream
				if h.Get("X-Meshtrace-Customer-Id") != "42" || !strings.Contains(h.Get("Baggage"), "customer_id=42") {
					t.Fatalf("upstream got x-meshtrace-customer-id %q, baggage %q; want 42 in both", h.Get("X-Meshtrace-Customer-Id"), h.Get("Baggage"))
				}
				return
			}
			deadline := time.Now().Add(time.Duration(pol.Export.FlushIntervalMS)*time.Millisecond + 20*time.Second)
			for !rx.sawAttr("customer_id", "42") {
				if time.Now().After(deadline) {
					t.Fatalf("no span with customer_id=42 reached cluster %q (%d export requests)", pol.Export.Cluster, rx.count())
				}
				time.Sleep(100 * time.Millisecond)
			}
		})
	}
}

// pluginConfig returns the configuration string the proxy hands the plugin for the named object.
func pluginConfig(t *testing.T, objs []manifest.Object, kind, name string) []byte {
	t.Helper()
	for _, o := range objs {
		if o.Kind != kind || o.Name != name {
			continue
		}
		if cfg, ok := pluginConfigOf(t, o); ok {
			return cfg
		}
	}
	t.Fatalf("no %s %s in the build", kind, name)
	return nil
}

// receiver is an OTLP/HTTP protobuf endpoint recording the string attributes of the spans it receives.
type receiver struct {
	srv *httptest.Server

	mu       sync.Mutex
	requests int
	attrs    map[string][]string
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{attrs: map[string][]string{}}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) addr() string { return r.srv.Listener.Addr().String() }

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	var msg coltracepb.ExportTraceServiceRequest
	if err == nil {
		err = proto.Unmarshal(body, &msg)
	}
	if err != nil || req.URL.Path != "/v1/traces" {
		http.Error(w, "bad export request", http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	r.requests++
	for _, rs := range msg.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				for _, kv := range s.Attributes {
					r.attrs[kv.Key] = append(r.attrs[kv.Key], kv.Value.GetStringValue())
				}
			}
		}
	}
	r.mu.Unlock()
	out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

func (r *receiver) sawAttr(key, value string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, v := range r.attrs[key] {
		if v == value {
			return true
		}
	}
	return false
}

func (r *receiver) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.requests
}
