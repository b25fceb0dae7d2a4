package manifest_test

import (
	"strings"
	"testing"

	"github.com/meshtrace/meshtrace/wasmplugin/manifest/manifesttest"
)

func TestCheck(t *testing.T) {
	v := manifesttest.Validator(t)
	const wasmPlugin = `apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata: {name: p, namespace: ns}
spec:
  url: oci://r/f:1
  phase: STATS
`
	cases := []struct {
		name    string
		yaml    string
		wantErr string // empty: valid
	}{
		{"wasm plugin", wasmPlugin, ""},
		{"unknown spec field (Go type)", wasmPlugin + "  phaze: STATS\n", "phaze"},
		{"bad enum (Go type)", strings.Replace(wasmPlugin, "STATS", "LATE", 1), "LATE"},
		{"sha256 pattern (CRD schema)", wasmPlugin + "  sha256: ABC\n", "sha256"},
		{"configmap", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {a: b}\n", ""},
		{"unknown field in a Deployment", `apiVersion: apps/v1
kind: Deployment
metadata: {name: d}
spec:
  selector: {matchLabels: {a: b}}
  template:
    metadata: {labels: {a: b}}
    spec:
      containers: [{name: c, image: i, imagePullPolicy: Always, livenessProbes: {}}]
`, "livenessProbes"},
		{"duplicate field", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {a: b}\ndata: {c: d}\n", "data"},
		{"unknown kind", "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n", "no schema known"},
		{"no name", "apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n", "metadata.name"},
		{"gloo wasm filter typo", `apiVersion: gateway.solo.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  bindAddress: "::"
  bindPort: 8080
  httpGateway:
    options:
      wasm:
        filters: [{name: m, image: i, vmTyp: V8}]
`, "vmTyp"},
		{"gloo upstream without hosts", "apiVersion: gloo.solo.io/v1\nkind: Upstream\nmetadata: {name: u}\nspec:\n  static: {hosts: []}\n", "hosts"},
		{"gloo upstream", "apiVersion: gloo.solo.io/v1\nkind: Upstream\nmetadata: {name: u}\nspec:\n  static: {hosts: [{addr: a, port: 4318}]}\n", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			objs, err := v.Check([]byte(tc.yaml))
			if tc.wantErr == "" {
				if err != nil || len(objs) != 1 {
					t.Fatalf("Check = %v, %v", objs, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error = %v, want it to mention %q", err, tc.wantErr)
			}
		})
	}
}

// FuzzCheck feeds arbitrary streams to the validator: it must return objects or errors, never panic.
func FuzzCheck(f *testing.F) {
	f.Add([]byte("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {a: b}\n"))
	f.Add([]byte("---\n---\napiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata: {name: p}\nspec: {url: oci://r/f}\n"))
	f.Add([]byte(`{"apiVersion":"gateway.solo.io/v1","kind":"Gateway","metadata":{"name":"g"},"spec":{"bindAddress":"::","bindPort":1,"httpGateway":{"options":{"wasm":{"filters":[{"image":"i"}]}}}}}`))
	v := manifesttest.Validator(f)
	f.Fuzz(func(t *testing.T, stream []byte) {
		objs, err := v.Check(stream)
		if err == nil {
			for _, o := range objs {
				if o.Kind == "" || o.Name == "" {
					t.Fatalf("accepted object without kind or name: %+v", o)
				}
			}
		}
	})
}
