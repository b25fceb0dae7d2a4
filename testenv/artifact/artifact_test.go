package artifact

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestFind(t *testing.T) {
	dir := t.TempDir()
	tinygo, goBuild := filepath.Join(dir, "a.wasm"), filepath.Join(dir, "b.wasm")
	for _, p := range []string{tinygo, goBuild} {
		writeFile(t, p, "\x00asm")
	}
	tests := []struct {
		name    string
		env     map[string]string
		want    []Build
		wantErr string
	}{
		{
			name: "from environment",
			env:  map[string]string{"MESHTRACE_FILTER_WASM": tinygo, "MESHTRACE_FILTER_GO_WASM": goBuild},
			want: []Build{{"tinygo", tinygo}, {"go", goBuild}},
		},
		{
			name:    "missing go build",
			env:     map[string]string{"MESHTRACE_FILTER_WASM": tinygo, "MESHTRACE_FILTER_GO_WASM": filepath.Join(dir, "none.wasm")},
			wantErr: "go filter build",
		},
		{
			name:    "missing tinygo build",
			env:     map[string]string{"MESHTRACE_FILTER_WASM": filepath.Join(dir, "none.wasm"), "MESHTRACE_FILTER_GO_WASM": goBuild},
			wantErr: "tinygo filter build",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := find(func(k string) string { return tc.env[k] })
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to mention %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestFindDefaultsToBuildDir(t *testing.T) {
	root, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	build, sub := filepath.Join(root, "build"), filepath.Join(root, "a", "b")
	for _, d := range []string{build, sub} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(root, "go.mod"), "module example.com/m\n")
	t.Chdir(sub)
	noEnv := func(string) string { return "" }

	if got, err := ModuleRoot(); err != nil || got != root {
		t.Fatalf("ModuleRoot() = %q, %v, want %q", got, err, root)
	}
	if _, err := find(noEnv); err == nil || !strings.Contains(err.Error(), build) {
		t.Errorf("find without builds: err = %v, want it to name %s", err, build)
	}
	writeFile(t, filepath.Join(build, "filter.wasm"), "\x00asm")
	writeFile(t, filepath.Join(build, "filter-go.wasm"), "\x00asm")
	want := []Build{{"tinygo", filepath.Join(build, "filter.wasm")}, {"go", filepath.Join(build, "filter-go.wasm")}}
	if got, err := find(noEnv); err != nil || !slices.Equal(got, want) {
		t.Errorf("find = %v, %v, want %v", got, err, want)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// fatalRecorder records Fatalf instead of stopping the test.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (f *fatalRecorder) Helper() {}
func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
}

func TestBuildsFailsWithMakeHint(t *testing.T) {
	t.Setenv("MESHTRACE_FILTER_WASM", filepath.Join(t.TempDir(), "missing.wasm"))
	rec := &fatalRecorder{TB: t}
	Builds(rec)
	if !strings.Contains(rec.msg, "run `make filter`") {
		t.Errorf("Builds on a missing file: Fatalf(%q), want the `make filter` hint", rec.msg)
	}
}

// TestBuildFlag checks the name=path flag: builds in order, and a value without a name or a path refused.
func TestBuildFlag(t *testing.T) {
	var f BuildFlag
	for _, v := range []string{"old=/tmp/old.wasm", "opt-s=/tmp/a=b.wasm"} {
		if err := f.Set(v); err != nil {
			t.Fatalf("Set(%q): %v", v, err)
		}
	}
	if f.String() != "old=/tmp/old.wasm,opt-s=/tmp/a=b.wasm" || len(f) != 2 || f[1].Path != "/tmp/a=b.wasm" {
		t.Errorf("flag = %q %+v", f.String(), f)
	}
	for _, bad := range []string{"", "old", "=/tmp/x.wasm", "old="} {
		if err := f.Set(bad); err == nil {
			t.Errorf("Set(%q) accepted", bad)
		}
	}
}
