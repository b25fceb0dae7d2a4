package wasmhost_test

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/meshtrace/meshtrace/testenv/artifact"
	"github.com/meshtrace/meshtrace/testenv/wasmhost"
	"github.com/meshtrace/meshtrace/testenv/wasmhost/hosttest"
)

// probeBuilds are the probe plugin (testdata/probe) compiled by TestMain with TinyGo and Go.
var probeBuilds []artifact.Build

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "wasmhost-probe")
	if err == nil {
		probeBuilds, err = artifact.BuildPlugin("./testenv/wasmhost/testdata/probe", dir)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "building the probe plugin:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// forEachBuild runs f as a subtest for the TinyGo and the Go build of the probe.
func forEachBuild(t *testing.T, f func(t *testing.T, m *wasmhost.Module)) {
	for _, b := range probeBuilds {
		t.Run(b.Name, func(t *testing.T) { f(t, hosttest.Module(t, b)) })
	}
}

// load instantiates the probe with cfg and closes it at the end of the test.
func load(t testing.TB, m *wasmhost.Module, cfg wasmhost.Config) *wasmhost.Host {
	t.Helper()
	h, err := m.Load(context.Background(), cfg)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	t.Cleanup(func() {
		if err := h.Close(context.Background()); err != nil && h.Err() == nil {
			t.Errorf("close: %v", err)
		}
	})
	return h
}
