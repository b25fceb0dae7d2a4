package envoy

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
)

// EnvVar names the environment variable that points at the Envoy binary (the Makefile exports it).
const EnvVar = "MESHTRACE_ENVOY"

// Binary returns the Envoy binary: $MESHTRACE_ENVOY, else .tools/envoy-*/bin/envoy under the
// module root (where `make tools` installs it; the lexically last if several). It fails, naming the fix,
// when neither exists.
func Binary() (string, error) {
	if p := os.Getenv(EnvVar); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("envoy: %s=%s: %w (run `make tools`)", EnvVar, p, err)
		}
		return p, nil
	}
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	found, _ := filepath.Glob(filepath.Join(root, ".tools", "envoy-*", "bin", "envoy"))
	if len(found) == 0 {
		return "", fmt.Errorf("envoy: no Envoy binary: set %s or run `make tools`", EnvVar)
	}
	sort.Strings(found)
	return found[len(found)-1], nil
}

// moduleRoot walks up from the working directory to the folder holding go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("envoy: go.mod not found above the working directory")
		}
		dir = parent
	}
}
