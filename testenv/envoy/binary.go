package envoy

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/meshtrace/meshtrace/testenv/artifact"
)

// EnvVar names the environment variable that points at the Envoy binary (the Makefile exports it).
const EnvVar = "MESHTRACE_ENVOY"

// Binary returns the Envoy binary: $MESHTRACE_ENVOY, else .tools/envoy-*/bin/envoy under the module root
// (where `make tools` installs it; the lexically last if several). It fails, naming the fix, when neither
// exists.
func Binary() (string, error) {
	if p := os.Getenv(EnvVar); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("envoy: %s=%s: %w (run `make tools`)", EnvVar, p, err)
		}
		return p, nil
	}
	root, err := artifact.ModuleRoot()
	if err != nil {
		return "", fmt.Errorf("envoy: %w", err)
	}
	found, _ := filepath.Glob(filepath.Join(root, ".tools", "envoy-*", "bin", "envoy"))
	if len(found) == 0 {
		return "", fmt.Errorf("envoy: no Envoy binary: set %s or run `make tools`", EnvVar)
	}
	slices.Sort(found)
	return found[len(found)-1], nil
}
