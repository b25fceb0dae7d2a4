// Package manifesttest gives tests a manifest.Validator loaded with the CustomResourceDefinitions shipped in
// the modules this repository depends on: Istio's (istio.io/api) and Gloo's (github.com/solo-io/solo-apis,
// whose CRDs define the kinds and versions but leave the spec schemaless; the Gloo messages meshtrace writes
// are checked with Gloo's Go types instead).
package manifesttest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/meshtrace/meshtrace/wasmplugin/manifest"
)

// crdFiles are the CRD files read, by module path.
var crdFiles = []struct{ module, file string }{
	{"istio.io/api", "kubernetes/customresourcedefinitions.gen.yaml"},
	{"github.com/solo-io/solo-apis", "crds/gateway.solo.io_v1_crds.yaml"},
	{"github.com/solo-io/solo-apis", "crds/gloo.solo.io_v1_crds.yaml"},
}

// kinds must each have a schema once the CRDs are loaded.
var kinds = []string{
	"extensions.istio.io/v1alpha1/WasmPlugin",
	"telemetry.istio.io/v1/Telemetry",
	"gateway.solo.io/v1/Gateway",
	"gloo.solo.io/v1/Upstream",
}

// readCRDs reads crdFiles once per test binary.
var readCRDs = sync.OnceValues(func() ([][]byte, error) {
	dirs := map[string]string{}
	var crds [][]byte
	for _, f := range crdFiles {
		dir, ok := dirs[f.module]
		if !ok {
			cmd := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", f.module)
			cmd.Stderr = os.Stderr
			out, err := cmd.Output()
			if err != nil {
				return nil, fmt.Errorf("go list -m %s: %w", f.module, err)
			}
			dir = strings.TrimSpace(string(out))
			dirs[f.module] = dir
		}
		b, err := os.ReadFile(filepath.Join(dir, f.file))
		if err != nil {
			return nil, err
		}
		crds = append(crds, b)
	}
	return crds, nil
})

// CRDs returns the CRD YAML streams, read from the module versions in go.mod (located with `go list -m`).
func CRDs(t testing.TB) [][]byte {
	t.Helper()
	crds, err := readCRDs()
	if err != nil {
		t.Fatalf("read CRDs from the modules: %v", err)
	}
	return crds
}

// Validator returns a validator with the CRD schemas.
func Validator(t testing.TB) *manifest.Validator {
	t.Helper()
	v, err := manifest.New(CRDs(t)...)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range kinds {
		if !v.HasSchema(k) {
			t.Fatalf("the CRDs define no schema for %s", k)
		}
	}
	return v
}
