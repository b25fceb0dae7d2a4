package artifact

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFind(t *testing.T) {
	dir := t.TempDir()
	tinygo, goBuild := filepath.Join(dir, "a.wasm"), filepath.Join(dir, "b.wasm")
	for _, p := range []string{tinygo, goBuild} {
		if err := os.WriteFile(p, []byte("\x00asm"), 0o644); err != nil {
			t.Fatal(err)
		}
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
			if len(got) != len(tc.want) || got[0] != tc.want[0] || got[1] != tc.want[1] {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestFindDefaultsToBuildDir(t *testing.T) {
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("ModuleRoot() = %s without go.mod", root)
	}
	builds, err := find(func(string) string { return "" })
	if err != nil {
		if !strings.Contains(err.Error(), filepath.Join(root, "build")) {
			t.Errorf("error %q does not name the build directory under %s", err, root)
		}
		return
	}
	for _, b := range builds {
		if filepath.Dir(b.Path) != filepath.Join(root, "build") {
			t.Errorf("%s build at %s, want it under %s/build", b.Name, b.Path, root)
		}
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
