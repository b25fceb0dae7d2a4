package wasmhost_test

import (
	"slices"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/testenv/wasmhost"
)

// TestRootsShareOneVM runs an HTTP root and a network root in one VM, as Envoy does for two filters
// from the same image. Each tick's call must come back to the root that made it: the SDK keeps the
// callbacks per root and panics on a callout id it does not know.
func TestRootsShareOneVM(t *testing.T) {
	forEachBuild(t, func(t *testing.T, m *wasmhost.Module) {
		h := load(t, m, wasmhost.Config{HTTPCall: func(wasmhost.HTTPCallRequest) (wasmhost.HTTPCallResponse, bool) {
			return wasmhost.HTTPCallResponse{Headers: [][2]string{{":status", "202"}}}, true
		}})
		network, err := h.AddRoot([]byte("network"), map[string][]byte{"plugin_root_id": []byte("net")})
		if err != nil {
			t.Fatal(err)
		}
		if network.ID() == h.Root().ID() || network.TickPeriod() != 250*time.Millisecond {
			t.Errorf("roots %d and %d, tick period %v", h.Root().ID(), network.ID(), network.TickPeriod())
		}
		for _, want := range []string{"started with 0 configuration bytes", "started with 7 configuration bytes"} {
			if !slices.Contains(h.Logs(), wasmhost.LogEntry{Level: wasmhost.LogInfo, Message: want}) {
				t.Errorf("no root logged %q: %v", want, h.Logs())
			}
		}
		s := h.NewHTTPStream(nil)
		c, _, err := network.NewConnection(nil)
		if err != nil {
			t.Fatal(err)
		}
		if n := h.LiveContexts(); n != 4 {
			t.Errorf("LiveContexts = %d, want two roots and two streams", n)
		}
		if _, err := s.RequestHeaders(nil, true); err != nil {
			t.Fatal(err)
		}
		if _, err := c.DownstreamData([]byte("abc"), false); err != nil {
			t.Fatal(err)
		}
		if got := string(c.DownstreamDataNow()); got != "<abc>" {
			t.Errorf("downstream data = %q", got)
		}
		if err := s.Complete(); err != nil {
			t.Fatal(err)
		}
		if err := c.Close(wasmhost.PeerLocal); err != nil {
			t.Fatal(err)
		}
		if err := h.Tick(); err != nil {
			t.Fatal(err)
		}
		if got := h.Metrics(); got["probe_ticks"] != 2 || got["probe_call_status"] != 202 {
			t.Errorf("metrics = %v, want a tick and an answered call per root", got)
		}
		if err := network.Tick(); err != nil {
			t.Fatal(err)
		}
		if got := h.Metrics()["probe_ticks"]; got != 3 {
			t.Errorf("probe_ticks = %d after ticking one root", got)
		}
		noProblems(t, h)
	})
}
