// Package manifesttest gives tests a manifest.Validator loaded with Istio's CustomResourceDefinitions, read
// from the istio.io/api module this repository depends on (kubernetes/customresourcedefinitions.gen.yaml).
package manifesttest

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/meshtrace/meshtrace/wasmplugin/manifest"
)

// IstioCRDFile is the path of Istio's CRDs inside the istio.io/api module.
const IstioCRDFile = "kubernetes/customresourcedefinitions.gen.yaml"

var (
	once sync.Once
	crds []byte
	err  error
)

// IstioCRDs returns the CRD YAML of the istio.io/api version in go.mod, located with `go list -m`.
func IstioCRDs(t testing.TB) []byte {
	t.Helper()
	once.Do(func() {
		var out []byte
		cmd := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "list", "-m", "-f", "{{.Dir}}", "istio.io/api")
		cmd.Stderr = os.Stderr
		if out, err = cmd.Output(); err != nil {
			return
		}
		crds, err = os.ReadFile(filepath.Join(strings.TrimSpace(string(out)), IstioCRDFile))
	})
	if err != nil {
		t.Fatalf("read Istio CRDs from the istio.io/api module: %v", err)
	}
	return crds
}

// Validator returns a validator with Istio's CRD schemas.
func Validator(t testing.TB) *manifest.Validator {
	t.Helper()
	v, err := manifest.New(IstioCRDs(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"extensions.istio.io/v1alpha1/WasmPlugin", "telemetry.istio.io/v1/Telemetry"} {
		if !v.HasSchema(k) {
			t.Fatalf("Istio CRDs define no schema for %s", k)
		}
	}
	return v
}
