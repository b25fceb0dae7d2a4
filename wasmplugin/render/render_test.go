package render

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/meshtrace/meshtrace/wasmplugin/manifest"
	"github.com/meshtrace/meshtrace/wasmplugin/manifest/manifesttest"
)

const digest = "4f1b2a0c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708"

func examplePolicy(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile("../../filter/policy/testdata/example.json")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func int32p(v int32) *int32 { return &v }

func TestIstioPlugins(t *testing.T) {
	v := manifesttest.Validator(t)
	pol := examplePolicy(t)
	base := Istio{Name: "meshtrace", Namespace: "istio-system", URL: "oci://ghcr.io/meshtrace/filter:v1", SHA256: digest}

	cases := []struct {
		name  string
		opts  func(o *Istio)
		types []PluginType
		// want are spec paths (dot-joined, as in the rendered JSON) and their values, per plugin name.
		want map[string]map[string]any
	}{
		{
			name: "defaults with selector",
			opts: func(o *Istio) { o.Selector = map[string]string{"app": "checkout"} },
			want: map[string]map[string]any{
				"meshtrace-http": {"type": "HTTP", "phase": "STATS", "failStrategy": "FAIL_OPEN", "sha256": digest,
					"url": base.URL, "selector.matchLabels.app": "checkout",
					"pluginConfig.export.cluster": "outbound|4318||meshtrace-indexer.meshtrace.svc.cluster.local"},
				"meshtrace-network": {"type": "NETWORK", "pluginName": "meshtrace-network", "match.0.mode": "CLIENT",
					"match.0.ports.0.number": 5432.0, "match.0.ports.1.number": 9092.0},
			},
		},
		{
			name: "gateway target ref, priority, fail close, server http ports",
			opts: func(o *Istio) {
				o.TargetRefs = []TargetRef{{Group: "gateway.networking.k8s.io", Kind: "Gateway", Name: "ingress"}}
				o.Priority = int32p(10)
				o.FailStrategy = "FAIL_CLOSE"
				o.HTTPMode = "SERVER"
				o.HTTPPorts = []uint32{8080}
				o.ImagePullPolicy = "Always"
			},
			types: []PluginType{HTTP},
			want: map[string]map[string]any{
				"meshtrace-http": {"targetRefs.0.kind": "Gateway", "targetRefs.0.name": "ingress", "priority": 10.0,
					"failStrategy": nil, // FAIL_CLOSE is the enum's zero value: omitted, and Istio's default
					"match.0.mode": "SERVER", "match.0.ports.0.number": 8080.0,
					"imagePullPolicy": "Always"},
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := base
			tc.opts(&o)
			out, err := IstioPlugins(o, pol, tc.types...)
			if err != nil {
				t.Fatal(err)
			}
			objs, err := v.Check(out)
			if err != nil {
				t.Fatalf("rendered YAML fails validation: %v\n%s", err, out)
			}
			if len(objs) != len(tc.want) {
				t.Fatalf("got %d objects, want %d:\n%s", len(objs), len(tc.want), out)
			}
			for _, obj := range objs {
				want, ok := tc.want[obj.Name]
				if !ok {
					t.Fatalf("unexpected object %s", obj)
				}
				for path, val := range want {
					if got := lookup(t, obj, "spec."+path); got != val {
						t.Errorf("%s spec.%s = %#v, want %#v", obj.Name, path, got, val)
					}
				}
			}
		})
	}
}

func TestIstioPluginsBlankPolicy(t *testing.T) {
	out, err := IstioPlugins(Istio{Name: "m", URL: "oci://r/f:1"}, []byte("  \n"), HTTP)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := manifesttest.Validator(t).Check(out)
	if err != nil {
		t.Fatal(err)
	}
	if got := lookup(t, objs[0], "spec.pluginConfig"); got != nil {
		t.Errorf("pluginConfig = %v, want none (the plugin's defaults)", got)
	}
}

func TestIstioPluginsRefuses(t *testing.T) {
	pol := examplePolicy(t)
	ok := Istio{Name: "meshtrace", URL: "oci://r/f:1"}
	cases := []struct {
		name    string
		opts    func(o *Istio)
		policy  string
		wantErr string
	}{
		{"bad policy field", nil, `{"tags":[{"attribute":"a","from":[{"header":"x"}],"frm":1}]}`, "tags[0].frm"},
		{"bad policy json", nil, `{"export":`, "policy"},
		{"sha256 not hex", func(o *Istio) { o.SHA256 = "sha256:abc" }, "", "sha256"},
		{"selector and target refs", func(o *Istio) {
			o.Selector = map[string]string{"a": "b"}
			o.TargetRefs = []TargetRef{{Kind: "Service", Name: "s"}}
		}, "", "exclusive"},
		{"unknown phase", func(o *Istio) { o.Phase = "LATE" }, "", "phase"},
		{"unknown mode", func(o *Istio) { o.HTTPMode = "BOTH" }, "", "match mode"},
		{"no url", func(o *Istio) { o.URL = "" }, "", "url"},
		{"url scheme", func(o *Istio) { o.URL = "ftp://r/f.wasm" }, "", "url"},
		{"selector wildcard", func(o *Istio) { o.Selector = map[string]string{"app": "*"} }, "", "wildcard"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := ok
			if tc.opts != nil {
				tc.opts(&o)
			}
			p := pol
			if tc.policy != "" {
				p = []byte(tc.policy)
			}
			out, err := IstioPlugins(o, p)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error = %v, want it to mention %q (output %q)", err, tc.wantErr, out)
			}
		})
	}
}

func TestGlooGateway(t *testing.T) {
	v := manifesttest.Validator(t)
	pol := examplePolicy(t)
	cases := []struct {
		name string
		g    Gloo
		want map[string]any
	}{
		{"image", Gloo{Name: "gateway-proxy", Namespace: "gloo-system", Image: "ghcr.io/meshtrace/filter:v1"},
			map[string]any{"bindPort": 8080.0, "httpGateway.options.wasm.filters.0.image": "ghcr.io/meshtrace/filter:v1",
				"httpGateway.options.wasm.filters.0.filterStage.stage": "AuthNStage",
				"httpGateway.options.wasm.filters.0.config.@type":      "type.googleapis.com/google.protobuf.StringValue"}},
		{"file path, route stage", Gloo{Name: "gw", FilePath: "/wasm/filter.wasm", Stage: "RouteStage", Predicate: "After",
			BindPort: 8443, ProxyNames: []string{"gateway-proxy"}},
			map[string]any{"bindPort": 8443.0, "proxyNames.0": "gateway-proxy",
				"httpGateway.options.wasm.filters.0.filePath":              "/wasm/filter.wasm",
				"httpGateway.options.wasm.filters.0.filterStage.predicate": "After"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := GlooGateway(tc.g, pol)
			if err != nil {
				t.Fatal(err)
			}
			objs, err := v.Check(out)
			if err != nil {
				t.Fatalf("rendered YAML fails validation: %v\n%s", err, out)
			}
			if len(objs) != 1 || objs[0].Kind != "Gateway" {
				t.Fatalf("objects = %v", objs)
			}
			for path, val := range tc.want {
				if got := lookup(t, objs[0], "spec."+path); got != val {
					t.Errorf("spec.%s = %#v, want %#v", path, got, val)
				}
			}
			// The filter receives the policy verbatim (compacted) as the StringValue's value.
			cfg := lookup(t, objs[0], "spec.httpGateway.options.wasm.filters.0.config.value").(string)
			var a, b any
			if err := json.Unmarshal([]byte(cfg), &a); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(pol, &b); err != nil {
				t.Fatal(err)
			}
			if ja, jb := mustJSON(t, a), mustJSON(t, b); ja != jb {
				t.Errorf("config value differs from the policy:\n%s\n%s", ja, jb)
			}
		})
	}
	if _, err := GlooGateway(Gloo{Name: "gw", Image: "i", FilePath: "f"}, pol); err == nil {
		t.Error("image and file path together accepted")
	}
	if _, err := GlooGateway(Gloo{Name: "gw", Image: "i"}, []byte(`{"export":{"batch_size":0}}`)); err == nil ||
		!strings.Contains(err.Error(), "export.batch_size") {
		t.Errorf("bad policy error = %v", err)
	}
}

func TestParseTargetRef(t *testing.T) {
	for in, want := range map[string]TargetRef{
		"Service/checkout":                          {Kind: "Service", Name: "checkout"},
		"gateway.networking.k8s.io/Gateway/ingress": {Group: "gateway.networking.k8s.io", Kind: "Gateway", Name: "ingress"},
	} {
		if got, err := ParseTargetRef(in); err != nil || got != want {
			t.Errorf("ParseTargetRef(%q) = %+v, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "checkout", "Deployment/x", "a//b", "a/b/c/d"} {
		if _, err := ParseTargetRef(in); err == nil {
			t.Errorf("ParseTargetRef(%q) accepted", in)
		}
	}
}

// lookup walks a dot path (array indexes as numbers) through the object's JSON.
func lookup(t *testing.T, obj manifest.Object, path string) any {
	t.Helper()
	var cur any
	if err := json.Unmarshal(obj.JSON, &cur); err != nil {
		t.Fatal(err)
	}
	for _, key := range strings.Split(path, ".") {
		switch c := cur.(type) {
		case map[string]any:
			cur = c[key]
		case []any:
			i := 0
			for _, r := range key {
				i = i*10 + int(r-'0')
			}
			if i >= len(c) {
				return nil
			}
			cur = c[i]
		default:
			return nil
		}
	}
	return cur
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// FuzzRender: every policy the plugin's parser accepts renders to WasmPlugins and a Gloo Gateway that pass
// validation; every other input is refused with an error.
func FuzzRender(f *testing.F) {
	f.Add([]byte(`{"tags":[{"attribute":"a","from":[{"header":"x-a"}]}]}`))
	f.Add([]byte(`{"network":{"kafka":{"ports":[9092,9093]},"peer_services":[{"port":5432,"service":"pg"}]}}`))
	f.Add([]byte(`{"export":{"batch_size":-1}}`))
	f.Add([]byte(``))
	v := manifesttest.Validator(f)
	f.Fuzz(func(t *testing.T, pol []byte) {
		out, err := IstioPlugins(Istio{Name: "m", Namespace: "ns", URL: "oci://r/f:1"}, pol)
		gw, gerr := GlooGateway(Gloo{Name: "gw", Image: "r/f:1"}, pol)
		if (err == nil) != (gerr == nil) {
			t.Fatalf("Istio and Gloo disagree on the policy: %v / %v", err, gerr)
		}
		if err != nil {
			return
		}
		if _, err := v.Check(out); err != nil {
			t.Fatalf("accepted policy renders invalid WasmPlugins: %v\n%s", err, out)
		}
		if _, err := v.Check(gw); err != nil {
			t.Fatalf("accepted policy renders an invalid Gateway: %v\n%s", err, gw)
		}
	})
}
