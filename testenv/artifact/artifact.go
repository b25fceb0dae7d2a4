// Package artifact locates the compiled filter plugins and the pinned TinyGo for tests, and builds
// proxy-wasm test plugins with both compilers.
//
// The filter is shipped as a TinyGo build (build/filter.wasm) and also built with standard Go
// (build/filter-go.wasm); `make filter` produces both and the Makefile exports their paths as
// MESHTRACE_FILTER_WASM and MESHTRACE_FILTER_GO_WASM. A missing artifact, or one older than the filter's
// sources (see CheckFresh), fails the test: it is never skipped, so a test never passes on a stale build.
package artifact

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// Build is one compiled plugin.
type Build struct {
	Name string // "tinygo" or "go"
	Path string // absolute path of the .wasm file
}

// Builds returns the two filter builds, TinyGo first. It fails the test if either file is missing or older
// than a filter source under the module root (CheckFresh), naming the file and `make filter`.
//
// Freshness is checked once per test binary, module root and builds: the binary was compiled from the
// sources as they were when `go test` started, so an edit made while a package's tests run does not fail
// the rest of them half way; the next `go test` run refuses the build.
func Builds(t testing.TB) []Build {
	t.Helper()
	builds, err := find(os.Getenv)
	if err == nil {
		var root string
		if root, err = ModuleRoot(); err == nil {
			err = checkFreshOnce(root, builds)
		}
	}
	if err != nil {
		t.Fatalf("%v: run `make filter`", err)
	}
	return builds
}

var (
	freshMu sync.Mutex
	freshed = map[string]error{} // CheckFresh results by module root and build paths
)

// checkFreshOnce returns CheckFresh(root, builds), computed on the first call for root and builds.
func checkFreshOnce(root string, builds []Build) error {
	key := root
	for _, b := range builds {
		key += "\x00" + b.Path
	}
	freshMu.Lock()
	defer freshMu.Unlock()
	if err, ok := freshed[key]; ok {
		return err
	}
	err := CheckFresh(root, builds)
	freshed[key] = err
	return err
}

// find resolves the filter builds from the environment or build/ under the module root.
func find(getenv func(string) string) ([]Build, error) {
	specs := []struct{ name, env, file string }{
		{"tinygo", "MESHTRACE_FILTER_WASM", "filter.wasm"},
		{"go", "MESHTRACE_FILTER_GO_WASM", "filter-go.wasm"},
	}
	var root string
	builds := make([]Build, 0, len(specs))
	for _, s := range specs {
		path := getenv(s.env)
		if path == "" {
			if root == "" {
				var err error
				if root, err = ModuleRoot(); err != nil {
					return nil, err
				}
			}
			path = filepath.Join(root, "build", s.file)
		}
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("%s filter build: %w", s.name, err)
		}
		abs, err := filepath.Abs(path)
		if err != nil {
			return nil, err
		}
		builds = append(builds, Build{Name: s.name, Path: abs})
	}
	return builds, nil
}

// ModuleRoot returns the directory of the nearest go.mod at or above the working directory.
func ModuleRoot() (string, error) {
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
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// TinyGo returns the TinyGo binary: $TINYGO, else the newest .tools/tinygo-*/build/tinygo under the
// module root (installed by `make tools`).
func TinyGo() (string, error) {
	if p := os.Getenv("TINYGO"); p != "" {
		return p, nil
	}
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	found, _ := filepath.Glob(filepath.Join(root, ".tools", "tinygo-*", "build", "tinygo"))
	if len(found) == 0 {
		return "", errors.New("TinyGo not found: run `make tools` or set TINYGO")
	}
	slices.Sort(found)
	return found[len(found)-1], nil
}

// BuildPlugin compiles the main package in pkgDir (a path under the module root, like
// "./testenv/wasmhost/testdata/probe") into outDir twice: with TinyGo through scripts/tinygo-build.sh,
// and with Go as a wasip1 c-shared reactor. It returns the builds TinyGo first, like Builds.
func BuildPlugin(pkgDir, outDir string) ([]Build, error) {
	root, err := ModuleRoot()
	if err != nil {
		return nil, err
	}
	tinygo, err := TinyGo()
	if err != nil {
		return nil, err
	}
	name := filepath.Base(pkgDir)
	builds := []Build{
		{Name: "tinygo", Path: filepath.Join(outDir, name+".wasm")},
		{Name: "go", Path: filepath.Join(outDir, name+"-go.wasm")},
	}
	cmds := []*exec.Cmd{
		exec.Command(filepath.Join(root, "scripts", "tinygo-build.sh"), tinygo, builds[0].Path, pkgDir),
		exec.Command("go", "build", "-buildmode=c-shared", "-o", builds[1].Path, pkgDir),
	}
	cmds[1].Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	for i, cmd := range cmds {
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("%s build of %s: %w\n%s", builds[i].Name, pkgDir, err, out)
		}
	}
	return builds, nil
}

// BuildFlag is a repeatable command-line flag (flag.Var) of filter builds, each given as name=path: the
// builds a benchmark runs beside the current ones (an earlier build, or one compiled with other flags).
type BuildFlag []Build

// String returns the builds as name=path, comma-separated.
func (f *BuildFlag) String() string {
	var s []string
	for _, b := range *f {
		s = append(s, b.Name+"="+b.Path)
	}
	return strings.Join(s, ",")
}

// Set adds one name=path build.
func (f *BuildFlag) Set(s string) error {
	name, path, ok := strings.Cut(s, "=")
	if !ok || name == "" || path == "" {
		return fmt.Errorf("want name=path, got %q", s)
	}
	*f = append(*f, Build{Name: name, Path: path})
	return nil
}
