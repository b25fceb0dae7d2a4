package hosttest

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/meshtrace/meshtrace/testenv/artifact"
)

func TestModuleCompilesEachPathOnce(t *testing.T) {
	builds := artifact.Builds(t)
	first := Module(t, builds[0])
	if again := Module(t, builds[0]); again != first {
		t.Errorf("second call for %s compiled again", builds[0].Name)
	}
	if other := Module(t, builds[1]); other == first {
		t.Errorf("%s and %s share one module", builds[0].Name, builds[1].Name)
	}
}

func TestModuleFailsTheTest(t *testing.T) {
	dir := t.TempDir()
	notWasm := filepath.Join(dir, "not.wasm")
	if err := os.WriteFile(notWasm, []byte("not wasm"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		b    artifact.Build
		want string
	}{
		{"missing file", artifact.Build{Name: "go", Path: filepath.Join(dir, "missing.wasm")}, "no such file"},
		{"not wasm", artifact.Build{Name: "tinygo", Path: notWasm}, "compile tinygo: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for range 2 { // a failure is not cached as a success
				tb := &fatalTB{TB: t}
				done := make(chan struct{})
				go func() {
					defer close(done)
					Module(tb, tt.b)
				}()
				<-done
				if !strings.Contains(tb.msg, tt.want) {
					t.Fatalf("failure %q, want it to contain %q", tb.msg, tt.want)
				}
			}
		})
	}
}

// fatalTB records the message of a fatal failure and stops the calling goroutine, as testing.T does.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Helper() {}

func (f *fatalTB) Fatal(args ...any) {
	f.msg = fmt.Sprint(args...)
	runtime.Goexit()
}

func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}
