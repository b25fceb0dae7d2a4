package artifact

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestSourcesMatchMakefile checks that Sources lists exactly the Makefile's FILTER_SRC, the prerequisites
// `make filter` rebuilds on, for this repository.
func TestSourcesMatchMakefile(t *testing.T) {
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	printer := filepath.Join(t.TempDir(), "print.mk")
	writeFile(t, printer, "print-filter-src:\n\t@printf '%s\\n' $(FILTER_SRC)\n")
	cmd := exec.Command("make", "--no-print-directory", "-s", "-f", "Makefile", "-f", printer, "print-filter-src")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("make print-filter-src: %v", err)
	}
	fromMake := strings.Fields(string(out))
	slices.Sort(fromMake)
	got, err := Sources(root)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	if !slices.Equal(got, fromMake) {
		t.Fatalf("Sources and the Makefile's FILTER_SRC differ:\nSources:    %v\nFILTER_SRC: %v", got, fromMake)
	}
	if len(got) < 10 || !slices.Contains(got, "filter/plugin/http.go") {
		t.Fatalf("Sources(%s) = %v, want the filter's Go files", root, got)
	}
}

// filterSrcLine returns the FILTER_SRC definition of the repository's Makefile.
func filterSrcLine(t *testing.T) string {
	t.Helper()
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "FILTER_SRC ") || strings.HasPrefix(sc.Text(), "FILTER_SRC:") {
			return sc.Text()
		}
	}
	t.Fatal("no FILTER_SRC in the Makefile")
	return ""
}

// tree is a module root with filter sources, non-sources and the two builds, all at one time.
type tree struct {
	root   string
	base   time.Time
	builds []Build
}

func newTree(t *testing.T) *tree {
	t.Helper()
	root := t.TempDir()
	tr := &tree{root: root, base: time.Now().Add(-time.Hour).Truncate(time.Second)}
	for _, f := range []string{"go.mod", "go.sum", "filter/main.go", "filter/plugin/http.go", "filter/plugin/http_test.go",
		"filter/plugin/README.md", "indexer/main.go", "build/filter.wasm", "build/filter-go.wasm"} {
		tr.write(t, f, 0)
	}
	// The rule of the repository's Makefile, with its own FILTER_SRC line, so make can be asked too.
	writeFile(t, filepath.Join(root, "Makefile"), filterSrcLine(t)+"\nbuild/filter.wasm build/filter-go.wasm: $(FILTER_SRC)\n\tmkdir -p build && touch $@\n")
	tr.builds = []Build{{"tinygo", filepath.Join(root, "build", "filter.wasm")}, {"go", filepath.Join(root, "build", "filter-go.wasm")}}
	return tr
}

// write creates or rewrites rel with modification time base+d.
func (tr *tree) write(t *testing.T, rel string, d time.Duration) {
	t.Helper()
	path := filepath.Join(tr.root, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, "x")
	if err := os.Chtimes(path, tr.base.Add(d), tr.base.Add(d)); err != nil {
		t.Fatal(err)
	}
}

// makeWouldRebuild asks make (-q) whether target is out of date in the tree.
func (tr *tree) makeWouldRebuild(t *testing.T, target string) bool {
	t.Helper()
	cmd := exec.Command("make", "-q", target)
	cmd.Dir = tr.root
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return false
	case errors.As(err, &exit) && exit.ExitCode() == 1:
		return true
	}
	t.Fatalf("make -q %s: %v", target, err)
	return false
}

// TestCheckFresh changes one file after the builds and checks that CheckFresh refuses the builds exactly
// when make would rebuild them, naming the changed file.
func TestCheckFresh(t *testing.T) {
	tests := []struct {
		name   string
		touch  map[string]time.Duration // file -> modification time relative to the builds
		stale  string                   // "" = fresh, else the build named in the error
		source string                   // the source named in the error
	}{
		{"all at one time", nil, "", ""},
		{"builds newer", map[string]time.Duration{"build/filter.wasm": time.Second, "build/filter-go.wasm": time.Second}, "", ""},
		{"plugin source edited", map[string]time.Duration{"filter/plugin/http.go": time.Millisecond}, "tinygo", "filter/plugin/http.go"},
		{"newest source named", map[string]time.Duration{"filter/main.go": time.Second, "go.mod": 2 * time.Second},
			"tinygo", "go.mod"},
		{"go.sum edited", map[string]time.Duration{"go.sum": time.Minute}, "tinygo", "go.sum"},
		{"only the go build is older", map[string]time.Duration{"build/filter.wasm": 2 * time.Second, "filter/main.go": time.Second},
			"go", "filter/main.go"},
		{"new source file", map[string]time.Duration{"filter/plugin/new.go": time.Second}, "tinygo", "filter/plugin/new.go"},
		{"test file edited", map[string]time.Duration{"filter/plugin/http_test.go": time.Hour}, "", ""},
		{"non-Go file under filter", map[string]time.Duration{"filter/plugin/README.md": time.Hour}, "", ""},
		{"Go file outside filter", map[string]time.Duration{"indexer/main.go": time.Hour}, "", ""},
		{"source older than the builds", map[string]time.Duration{"filter/main.go": -time.Minute}, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTree(t)
			for f, d := range tc.touch {
				tr.write(t, f, d)
			}
			err := CheckFresh(tr.root, tr.builds)
			var stale *StaleError
			switch {
			case tc.stale == "" && err != nil:
				t.Fatalf("CheckFresh: %v, want fresh", err)
			case tc.stale != "" && !errors.As(err, &stale):
				t.Fatalf("CheckFresh: %v, want a *StaleError", err)
			case tc.stale != "":
				if stale.Build.Name != tc.stale || stale.Source != tc.source {
					t.Fatalf("stale %s build because of %s, want %s because of %s", stale.Build.Name, stale.Source, tc.stale, tc.source)
				}
				for _, want := range []string{tc.stale + " filter build", stale.Build.Path, "older than its source " + tc.source} {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error %q does not contain %q", err, want)
					}
				}
			}
			rebuild := tr.makeWouldRebuild(t, "build/filter.wasm") || tr.makeWouldRebuild(t, "build/filter-go.wasm")
			if rebuild != (tc.stale != "") {
				t.Errorf("make would rebuild: %v; CheckFresh: %v", rebuild, err)
			}
		})
	}
}

// TestFreshCloneThenMake mimics CI: a clone gives every file its checkout time and make then writes the
// builds, possibly within the same clock tick; the builds must count as fresh.
func TestFreshCloneThenMake(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Fatal(err)
	}
	src := newTree(t)
	for _, f := range []string{"build/filter.wasm", "build/filter-go.wasm"} {
		if err := os.Remove(filepath.Join(src.root, f)); err != nil {
			t.Fatal(err)
		}
	}
	clone := filepath.Join(t.TempDir(), "clone")
	git := func(dir string, args ...string) {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-c", "user.name=t", "-c", "user.email=t@example.com"}, args...)...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	git(src.root, "init", "-q")
	git(src.root, "add", ".")
	git(src.root, "commit", "-q", "-m", "sources")
	git(src.root, "clone", "-q", src.root, clone)
	cmd := exec.Command("make", "build/filter.wasm", "build/filter-go.wasm")
	cmd.Dir = clone
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make: %v\n%s", err, out)
	}
	builds := []Build{{"tinygo", filepath.Join(clone, "build", "filter.wasm")}, {"go", filepath.Join(clone, "build", "filter-go.wasm")}}
	if err := CheckFresh(clone, builds); err != nil {
		t.Fatalf("fresh clone, then make: %v", err)
	}
	// The developer's loop: edit a source after the build, and the build is refused until make runs again.
	later := time.Now().Add(time.Second)
	if err := os.Chtimes(filepath.Join(clone, "filter", "plugin", "http.go"), later, later); err != nil {
		t.Fatal(err)
	}
	if err := CheckFresh(clone, builds); err == nil {
		t.Fatal("edited source after the build: CheckFresh accepted the build")
	}
}

// TestBuildsRefusesStaleBuild checks the message a test gets for a stale build: the build, the source and
// the command to run.
func TestBuildsRefusesStaleBuild(t *testing.T) {
	tr := newTree(t)
	tr.write(t, "filter/plugin/http.go", time.Second)
	t.Chdir(filepath.Join(tr.root, "filter", "plugin"))
	t.Setenv("MESHTRACE_FILTER_WASM", "")
	t.Setenv("MESHTRACE_FILTER_GO_WASM", "")
	rec := &fatalRecorder{TB: t}
	Builds(rec)
	for _, want := range []string{"tinygo filter build " + tr.builds[0].Path, "older than its source filter/plugin/http.go",
		"run `make filter`"} {
		if !strings.Contains(rec.msg, want) {
			t.Errorf("Builds on a stale build: Fatalf(%q), want it to contain %q", rec.msg, want)
		}
	}
}

// TestBuildsChecksFreshnessOnce checks that an edit made after a test binary's first Builds call does not
// fail its later tests: the binary was compiled from the sources before the edit.
func TestBuildsChecksFreshnessOnce(t *testing.T) {
	tr := newTree(t)
	t.Chdir(tr.root)
	t.Setenv("MESHTRACE_FILTER_WASM", "")
	t.Setenv("MESHTRACE_FILTER_GO_WASM", "")
	for i, edit := range []bool{false, true} {
		if edit {
			tr.write(t, "filter/plugin/http.go", time.Minute)
		}
		rec := &fatalRecorder{TB: t}
		Builds(rec)
		if rec.msg != "" {
			t.Fatalf("call %d: Builds failed: %s", i, rec.msg)
		}
	}
	if err := CheckFresh(tr.root, tr.builds); err == nil {
		t.Fatal("CheckFresh itself accepts the edited tree")
	}
}
