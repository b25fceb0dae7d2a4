package render

import (
	"cmp"
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

// policyWithDirection returns the example policy with its direction ("auto") replaced by dir.
func policyWithDirection(t *testing.T, dir string) []byte {
	t.Helper()
	pol := examplePolicy(t)
	out := strings.Replace(string(pol), `"direction": "auto"`, `"direction": "`+dir+`"`, 1)
	if out == string(pol) && dir != "auto" {
		t.Fatal(`example policy has no "direction": "auto"`)
	}
	return []byte(out)
}

func TestIstioPlugins(t *testing.T) {
	v := manifesttest.Validator(t)
	base := Istio{Name: "meshtrace", Namespace: "istio-system", URL: "oci://ghcr.io/meshtrace/filter:v1", SHA256: digest}
	network := map[string]any{"type": "NETWORK", "pluginName": "meshtrace-network", "match.0.mode": "CLIENT",
		"match.0.ports.0.number": 5432.0, "match.0.ports.1.number": 9092.0, "pluginConfig.direction": "client"}

	cases := []struct {
		name      string
		direction string // the policy's; default auto (the example's)
		opts      func(o *Istio)
		types     []PluginType
		// want are spec paths (dot-joined, as in the rendered JSON) and their values, per plugin name.
		want map[string]map[string]any
	}{
		{
			name: "auto: one HTTP plugin per side, with selector",
			opts: func(o *Istio) { o.Selector = map[string]string{"app": "checkout"} },
			want: map[string]map[string]any{
				"meshtrace-http-inbound": {"type": "HTTP", "phase": "STATS", "failStrategy": "FAIL_OPEN", "sha256": digest,
					"url": base.URL, "selector.matchLabels.app": "checkout", "match.0.mode": "SERVER",
					"pluginConfig.direction":      "inbound",
					"pluginConfig.export.cluster": "outbound|4318||meshtrace-indexer.meshtrace.svc.cluster.local"},
				"meshtrace-http-outbound": {"type": "HTTP", "phase": "STATS", "failStrategy": "FAIL_OPEN", "sha256": digest,
					"url": base.URL, "selector.matchLabels.app": "checkout", "match.0.mode": "CLIENT",
					"pluginConfig.direction":      "client",
					"pluginConfig.export.cluster": "outbound|4318||meshtrace-indexer.meshtrace.svc.cluster.local"},
				"meshtrace-network": network,
			},
		},
		{
			name: "auto: both sides share priority, fail strategy, phase and ports",
			opts: func(o *Istio) {
				o.Priority = int32p(7)
				o.FailStrategy = "FAIL_RELOAD"
				o.Phase = "AUTHN"
				o.HTTPPorts = []uint32{8080}
				o.HTTPMode = "CLIENT_AND_SERVER"
			},
			types: []PluginType{HTTP},
			want: map[string]map[string]any{
				"meshtrace-http-inbound": {"priority": 7.0, "failStrategy": "FAIL_RELOAD", "phase": "AUTHN",
					"match.0.mode": "SERVER", "match.0.ports.0.number": 8080.0, "pluginConfig.direction": "inbound"},
				"meshtrace-http-outbound": {"priority": 7.0, "failStrategy": "FAIL_RELOAD", "phase": "AUTHN",
					"match.0.mode": "CLIENT", "match.0.ports.0.number": 8080.0, "pluginConfig.direction": "client"},
			},
		},
		{
			name: "auto: gateway target ref, priority, fail close, server http ports",
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
				"meshtrace-http-inbound": {"targetRefs.0.kind": "Gateway", "targetRefs.0.name": "ingress", "priority": 10.0,
					"failStrategy": nil, // FAIL_CLOSE is the enum's zero value: omitted, and Istio's default
					"match.0.mode": "SERVER", "match.0.ports.0.number": 8080.0,
					"imagePullPolicy": "Always", "pluginConfig.direction": "inbound"},
			},
		},
		{
			name: "auto: client mode keeps the client side",
			opts: func(o *Istio) { o.HTTPMode = "CLIENT" },
			want: map[string]map[string]any{
				"meshtrace-http-outbound": {"match.0.mode": "CLIENT", "pluginConfig.direction": "client"},
				"meshtrace-network":       network,
			},
		},
		{
			name: "auto: a network plugin on the server side is inbound", types: []PluginType{Network},
			opts: func(o *Istio) { o.NetworkMode = "SERVER" },
			want: map[string]map[string]any{"meshtrace-network": {"match.0.mode": "SERVER", "pluginConfig.direction": "inbound"}},
		},
		{
			name: "auto: a network plugin on both sides keeps auto", types: []PluginType{Network},
			opts: func(o *Istio) { o.NetworkMode = "CLIENT_AND_SERVER" },
			want: map[string]map[string]any{"meshtrace-network": {"match.0.mode": "CLIENT_AND_SERVER", "pluginConfig.direction": "auto"}},
		},
		{
			name: "inbound: one plugin in server mode", direction: "inbound", types: []PluginType{HTTP},
			want: map[string]map[string]any{"meshtrace-http": {"match.0.mode": "SERVER", "pluginConfig.direction": "inbound"}},
		},
		{
			name: "outbound: one plugin in client mode", direction: "outbound", types: []PluginType{HTTP},
			want: map[string]map[string]any{"meshtrace-http": {"match.0.mode": "CLIENT", "pluginConfig.direction": "outbound"}},
		},
		{
			name: "client: one plugin in client mode", direction: "client",
			want: map[string]map[string]any{
				"meshtrace-http":    {"match.0.mode": "CLIENT", "pluginConfig.direction": "client"},
				"meshtrace-network": {"match.0.mode": "CLIENT", "pluginConfig.direction": "client"},
			},
		},
		{
			name: "gateway: one plugin in client mode", direction: "gateway", types: []PluginType{HTTP},
			opts: func(o *Istio) { o.Selector = map[string]string{"istio": "ingressgateway"} },
			want: map[string]map[string]any{"meshtrace-http": {"match.0.mode": "CLIENT", "pluginConfig.direction": "gateway",
				"selector.matchLabels.istio": "ingressgateway"}},
		},
		{
			name: "gateway: an explicit http mode is kept", direction: "gateway", types: []PluginType{HTTP},
			opts: func(o *Istio) { o.HTTPMode = "CLIENT_AND_SERVER" },
			want: map[string]map[string]any{"meshtrace-http": {"match.0.mode": "CLIENT_AND_SERVER", "pluginConfig.direction": "gateway"}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := base
			if tc.opts != nil {
				tc.opts(&o)
			}
			out, err := IstioPlugins(o, policyWithDirection(t, cmp.Or(tc.direction, "auto")), tc.types...)
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
			specs := map[string]map[string]any{}
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
				specs[obj.Name], _ = lookup(t, obj, "spec").(map[string]any)
			}
			// The two sides differ in their match mode and pluginConfig direction only.
			in, out2 := specs["meshtrace-http-inbound"], specs["meshtrace-http-outbound"]
			if in != nil && out2 != nil {
				for _, spec := range []map[string]any{in, out2} {
					spec["match"].([]any)[0].(map[string]any)["mode"] = nil
					spec["pluginConfig"].(map[string]any)["direction"] = nil
				}
				if a, b := mustJSON(t, in), mustJSON(t, out2); a != b {
					t.Errorf("the HTTP plugins differ beyond mode and direction:\n%s\n%s", a, b)
				}
			}
		})
	}
}

// TestIstioPluginsKeepThePolicy checks that the per-side HTTP plugins carry the policy as written but for
// the direction: each pluginConfig parses to the policy with its direction replaced.
func TestIstioPluginsKeepThePolicy(t *testing.T) {
	pol := examplePolicy(t)
	out, err := IstioPlugins(Istio{Name: "m", URL: "oci://r/f:1"}, pol, HTTP)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := manifesttest.Validator(t).Check(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, obj := range objs {
		cfg := lookup(t, obj, "spec.pluginConfig").(map[string]any)
		dir := cfg["direction"].(string)
		want := map[string]any{}
		if err := json.Unmarshal(policyWithDirection(t, dir), &want); err != nil {
			t.Fatal(err)
		}
		if a, b := mustJSON(t, cfg), mustJSON(t, want); a != b {
			t.Errorf("%s pluginConfig = %s, want %s", obj.Name, a, b)
		}
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
	// The blank policy's direction is auto: one plugin per side, whose pluginConfig says only the side's
	// direction (the plugin's defaults otherwise).
	want := map[string]string{"m-http-inbound": `{"direction":"inbound"}`, "m-http-outbound": `{"direction":"client"}`}
	if len(objs) != len(want) {
		t.Fatalf("got %d objects, want %d:\n%s", len(objs), len(want), out)
	}
	for _, obj := range objs {
		if got := mustJSON(t, lookup(t, obj, "spec.pluginConfig")); got != want[obj.Name] {
			t.Errorf("%s pluginConfig = %s, want %s", obj.Name, got, want[obj.Name])
		}
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
		{"unknown mode, explicit direction", func(o *Istio) { o.HTTPMode = "BOTH" }, `{"direction": "client"}`, "match mode"},
		{"client mode for inbound", func(o *Istio) { o.HTTPMode = "CLIENT" }, `{"direction": "inbound"}`, "http mode CLIENT"},
		{"server mode for a gateway", func(o *Istio) { o.HTTPMode = "SERVER" }, `{"direction": "gateway"}`, "http mode SERVER"},
		{"server mode for client", func(o *Istio) { o.HTTPMode = "SERVER" }, `{"direction": "client"}`, "http mode SERVER"},
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
	f.Add([]byte(`{"hmac_key_env":"MESHTRACE_HMAC_KEY","tags":[{"attribute":"a","from":[{"header":"x-a"}],"hash":true}]}`))
	f.Add([]byte(`{"export":{"token_env":"MESHTRACE_INGEST_TOKEN"},"hmac_key_env":"MESHTRACE_HMAC_KEY"}`))
	v := manifesttest.Validator(f)
	f.Fuzz(func(t *testing.T, pol []byte) {
		out, err := IstioPlugins(Istio{Name: "m", Namespace: "ns", URL: "oci://r/f:1"}, pol)
		gw, gerr := GlooGateway(Gloo{Name: "gw", Image: "r/f:1"}, pol)
		// Gloo cannot give the VM an environment, so it refuses hmac_key_env and export.token_env, which
		// Istio renders.
		glooOnly := err == nil && gerr != nil && strings.Contains(gerr.Error(), ": Gloo's wasm filter options cannot set the Wasm VM's environment")
		if (err == nil) != (gerr == nil) && !glooOnly {
			t.Fatalf("Istio and Gloo disagree on the policy: %v / %v", err, gerr)
		}
		if err != nil {
			return
		}
		if _, err := v.Check(out); err != nil {
			t.Fatalf("accepted policy renders invalid WasmPlugins: %v\n%s", err, out)
		}
		if glooOnly {
			return
		}
		if _, err := v.Check(gw); err != nil {
			t.Fatalf("accepted policy renders an invalid Gateway: %v\n%s", err, gw)
		}
	})
}

// TestIstioPluginsHMACKeyEnv checks that a policy reading its key from the environment renders WasmPlugins
// that pass the variable from the istio-proxy container to the VM (valueFrom HOST, never the value), with a
// note on setting it from a Secret, and that rendering does not need the variable itself.
func TestIstioPluginsHMACKeyEnv(t *testing.T) {
	const keyVar = "MESHTRACE_RENDER_TEST_HMAC_KEY" // not set here: the proxy's, not the renderer's
	if _, ok := os.LookupEnv(keyVar); ok {
		t.Fatalf("%s is set", keyVar)
	}
	pol := strings.Replace(string(examplePolicy(t)), `"hmac_key": "change-me"`, `"hmac_key_env": "`+keyVar+`"`, 1)
	if !strings.Contains(pol, keyVar) {
		t.Fatal(`example policy has no "hmac_key": "change-me"`)
	}
	out, err := IstioPlugins(Istio{Name: "m", Namespace: "shop", URL: "oci://r/f:1"}, []byte(pol))
	if err != nil {
		t.Fatal(err)
	}
	objs, err := manifesttest.Validator(t).Check(out)
	if err != nil {
		t.Fatalf("rendered YAML fails validation: %v\n%s", err, out)
	}
	if len(objs) != 3 {
		t.Fatalf("got %d objects, want the two HTTP sides and the network plugin:\n%s", len(objs), out)
	}
	for _, obj := range objs {
		env := mustJSON(t, lookup(t, obj, "spec.vmConfig.env"))
		if want := `[{"name":"` + keyVar + `","valueFrom":"HOST"}]`; env != want {
			t.Errorf("%s spec.vmConfig.env = %s, want %s", obj.Name, env, want)
		}
		if got := lookup(t, obj, "spec.pluginConfig.hmac_key_env"); got != keyVar {
			t.Errorf("%s pluginConfig.hmac_key_env = %v", obj.Name, got)
		}
	}
	for _, want := range []string{"# The filter reads its HMAC key (hmac_key_env) from the environment variable " + keyVar,
		"#   - name: istio-proxy", "#     - name: " + keyVar, "secretKeyRef", "docs/filter.md"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(string(out), "WARNING") {
		t.Errorf("a warning with the key in the environment:\n%s", out)
	}
	// Gloo's wasm filter cannot set the VM's environment: refused rather than a filter that cannot start.
	if _, err := GlooGateway(Gloo{Name: "gw", Image: "r/f:1"}, []byte(pol)); err == nil || !strings.Contains(err.Error(), "hmac_key_env") {
		t.Errorf("Gloo with hmac_key_env: error %v", err)
	}
}

// TestRenderInlineKeyWarns checks that an inline hmac_key is rendered as written, with the plugin's warning
// as a comment, and that other policies get neither the comment nor a vmConfig.
func TestRenderInlineKeyWarns(t *testing.T) {
	pol := examplePolicy(t) // "hmac_key": "change-me"
	istio, err := IstioPlugins(Istio{Name: "m", URL: "oci://r/f:1"}, pol, HTTP)
	if err != nil {
		t.Fatal(err)
	}
	gloo, err := GlooGateway(Gloo{Name: "gw", Image: "r/f:1"}, pol)
	if err != nil {
		t.Fatal(err)
	}
	for name, out := range map[string][]byte{"istio": istio, "gloo": gloo} {
		if !strings.HasPrefix(string(out), "# WARNING: hmac_key is inline: anyone who can read the WasmPlugin") {
			t.Errorf("%s output does not start with the warning:\n%s", name, out)
		}
	}
	objs, err := manifesttest.Validator(t).Check(istio)
	if err != nil {
		t.Fatal(err)
	}
	for _, obj := range objs {
		if got := lookup(t, obj, "spec.vmConfig"); got != nil {
			t.Errorf("%s has a vmConfig: %v", obj.Name, got)
		}
	}
	plain, err := IstioPlugins(Istio{Name: "m", URL: "oci://r/f:1"}, []byte(`{"direction": "inbound"}`))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(plain), "#") || strings.Contains(string(plain), "vmConfig") {
		t.Errorf("a policy without a key got notes or a vmConfig:\n%s", plain)
	}
}

// TestIstioPluginsTokenEnv checks that a policy reading its ingest token from the environment renders
// WasmPlugins passing the variable from the istio-proxy container (valueFrom HOST, never a value), through
// the same path as hmac_key_env: both variables in one vmConfig.env, each once, one note listing both, and
// Gloo refusing it. Rendering does not need the variable.
func TestIstioPluginsTokenEnv(t *testing.T) {
	const tokenVar, keyVar = "MESHTRACE_RENDER_TEST_TOKEN", "MESHTRACE_RENDER_TEST_HMAC_KEY"
	for _, v := range []string{tokenVar, keyVar} {
		if _, ok := os.LookupEnv(v); ok {
			t.Fatalf("%s is set", v)
		}
	}
	example := string(examplePolicy(t))
	withToken := strings.Replace(example, `"max_retries": 2`, `"max_retries": 2, "token_env": "`+tokenVar+`"`, 1)
	withBoth := strings.Replace(withToken, `"hmac_key": "change-me"`, `"hmac_key_env": "`+keyVar+`"`, 1)
	sameVar := strings.Replace(withToken, `"hmac_key": "change-me"`, `"hmac_key_env": "`+tokenVar+`"`, 1)
	if withToken == example || withBoth == withToken || sameVar == withToken {
		t.Fatal("the example policy changed: no max_retries 2 or inline hmac_key to replace")
	}
	tests := []struct {
		name, policy, env string
		notes             []string
	}{
		{"token only", withToken, `[{"name":"` + tokenVar + `","valueFrom":"HOST"}]`, []string{
			"# The filter reads its ingest token (export.token_env) from the environment variable " + tokenVar + " of the\n",
			"# Set it from a Secret", "#     - name: " + tokenVar + "\n#       valueFrom: {secretKeyRef: {name: meshtrace-ingest-token, key: token}}",
			"# See docs/filter.md#the-ingest-token.\n", "# WARNING: hmac_key is inline"}},
		{"token and key", withBoth, `[{"name":"` + keyVar + `","valueFrom":"HOST"},{"name":"` + tokenVar + `","valueFrom":"HOST"}]`, []string{
			"# The filter reads its HMAC key (hmac_key_env) from the environment variable " + keyVar,
			"# The filter reads its ingest token (export.token_env) from the environment variable " + tokenVar,
			"# Set each from a Secret", "#     - name: " + keyVar + "\n", "#     - name: " + tokenVar + "\n",
			"# See docs/filter.md#the-hmac-key and docs/filter.md#the-ingest-token.\n"}},
		{"one variable for both", sameVar, `[{"name":"` + tokenVar + `","valueFrom":"HOST"}]`, []string{
			"(hmac_key_env) from the environment variable " + tokenVar, "(export.token_env) from the environment variable " + tokenVar}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := IstioPlugins(Istio{Name: "m", Namespace: "shop", URL: "oci://r/f:1"}, []byte(tc.policy))
			if err != nil {
				t.Fatal(err)
			}
			objs, err := manifesttest.Validator(t).Check(out)
			if err != nil {
				t.Fatalf("rendered YAML fails validation: %v\n%s", err, out)
			}
			if len(objs) != 3 {
				t.Fatalf("got %d objects, want the two HTTP sides and the network plugin:\n%s", len(objs), out)
			}
			for _, obj := range objs {
				if env := mustJSON(t, lookup(t, obj, "spec.vmConfig.env")); env != tc.env {
					t.Errorf("%s spec.vmConfig.env = %s, want %s", obj.Name, env, tc.env)
				}
				if got := lookup(t, obj, "spec.pluginConfig.export.token_env"); got != tokenVar {
					t.Errorf("%s pluginConfig.export.token_env = %v", obj.Name, got)
				}
			}
			for _, want := range tc.notes {
				if !strings.Contains(string(out), want) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			}
			if n := strings.Count(string(out), "#     - name: "+tokenVar+"\n"); n != 1 {
				t.Errorf("the note sets %s %d times:\n%s", tokenVar, n, out)
			}
			_, err = GlooGateway(Gloo{Name: "gw", Image: "r/f:1"}, []byte(tc.policy))
			if err == nil || !strings.Contains(err.Error(), "Gloo's wasm filter options cannot set the Wasm VM's environment") {
				t.Errorf("Gloo with token_env: error %v", err)
			}
		})
	}
	// Gloo names the field it cannot serve.
	if _, err := GlooGateway(Gloo{Name: "gw", Image: "r/f:1"}, []byte(withToken)); err == nil ||
		!strings.HasPrefix(err.Error(), "policy: export.token_env: Gloo's") || !strings.Contains(err.Error(), "ingest token") {
		t.Errorf("Gloo with token_env: error %v", err)
	}
}
