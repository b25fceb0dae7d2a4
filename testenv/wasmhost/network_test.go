package wasmhost_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/meshtrace/meshtrace/testenv/wasmhost"
)

func TestConnection(t *testing.T) {
	forEachBuild(t, func(t *testing.T, m *wasmhost.Module) {
		h := load(t, m, wasmhost.Config{PluginConfig: []byte("network")})
		c, a, err := h.NewConnection(map[string][]byte{"destination.port": []byte("9092")})
		if err != nil || a != wasmhost.ActionContinue {
			t.Fatalf("NewConnection = %v, %v", a, err)
		}
		if v, ok := c.Property("destination.port"); !ok || string(v) != "9092" {
			t.Errorf("connection property = %q, %v", v, ok)
		}
		exchanges := []struct {
			downstream, upstream         string
			wantDownstream, wantUpstream string
		}{
			{"produce", "ack", "<produce>", "ACK"},
			{"x", "y", "<x>", "Y"},
		}
		var sent int64
		for _, e := range exchanges {
			if a, err := c.DownstreamData([]byte(e.downstream), false); err != nil || a != wasmhost.ActionContinue {
				t.Fatalf("DownstreamData = %v, %v", a, err)
			}
			sent += int64(len(e.downstream))
			if got := string(c.DownstreamDataNow()); got != e.wantDownstream {
				t.Errorf("downstream data = %q, want %q", got, e.wantDownstream)
			}
			if a, err := c.UpstreamData([]byte(e.upstream), false); err != nil || a != wasmhost.ActionContinue {
				t.Fatalf("UpstreamData = %v, %v", a, err)
			}
			if got := string(c.UpstreamDataNow()); got != e.wantUpstream {
				t.Errorf("upstream data = %q, want %q", got, e.wantUpstream)
			}
		}
		if got := h.Metrics()["probe_downstream_bytes"]; got != sent {
			t.Errorf("probe_downstream_bytes = %d, want %d", got, sent)
		}
		if n := h.LiveContexts(); n != 2 {
			t.Errorf("LiveContexts with an open connection = %d, want 2", n)
		}
		if err := c.Close(wasmhost.PeerRemote); err != nil {
			t.Fatal(err)
		}
		if got := h.Metrics()["probe_closes"]; got != 2 {
			t.Errorf("close callbacks = %d, want downstream and upstream", got)
		}
		if n := h.LiveContexts(); n != 1 {
			t.Errorf("LiveContexts after Close = %d, want 1", n)
		}
		want := wasmhost.LogEntry{Level: wasmhost.LogInfo, Message: "connection done"}
		if !slices.Contains(h.Logs(), want) {
			t.Errorf("proxy_on_log not called: logs %v", h.Logs())
		}
		if _, err := c.DownstreamData([]byte("late"), true); err == nil {
			t.Error("data on a closed connection is not an error")
		}
		noProblems(t, h)
	})
}

// TestCounterIncrementByZero pins an Envoy rule plugins trip over: a counter accepts positive
// increments only, and the SDK panics on the BadArgument. The probe counts downstream bytes, so an empty
// chunk kills it, as it would in Envoy.
func TestCounterIncrementByZero(t *testing.T) {
	forEachBuild(t, func(t *testing.T, m *wasmhost.Module) {
		h := load(t, m, wasmhost.Config{PluginConfig: []byte("network")})
		c, _, err := h.NewConnection(nil)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.DownstreamData(nil, true)
		if err == nil || !strings.Contains(err.Error(), "by 0: error status returned by host: bad argument") {
			t.Errorf("DownstreamData(empty) = %v, want the SDK's panic on BadArgument", err)
		}
	})
}

func TestContextsDeleted(t *testing.T) {
	forEachBuild(t, func(t *testing.T, m *wasmhost.Module) {
		h := load(t, m, wasmhost.Config{})
		if n := h.LiveContexts(); n != 1 {
			t.Fatalf("LiveContexts of an idle host = %d, want 1 (the root)", n)
		}
		var open []*wasmhost.HTTPStream
		for range 5 {
			s := h.NewHTTPStream(nil)
			if _, err := s.RequestHeaders(nil, true); err != nil {
				t.Fatal(err)
			}
			open = append(open, s)
		}
		if n := h.LiveContexts(); n != 6 {
			t.Errorf("LiveContexts = %d, want 6", n)
		}
		for _, s := range open {
			if err := s.Complete(); err != nil {
				t.Fatal(err)
			}
		}
		if n := h.LiveContexts(); n != 1 {
			t.Errorf("LiveContexts after Complete = %d, want 1", n)
		}
		if err := open[0].Complete(); err == nil {
			t.Error("completing a stream twice is not an error")
		}
	})
}

func TestSharedData(t *testing.T) {
	forEachBuild(t, func(t *testing.T, m *wasmhost.Module) {
		shared := wasmhost.NewShared()
		a := load(t, m, wasmhost.Config{Shared: shared})
		b := load(t, m, wasmhost.Config{Shared: shared})
		private := load(t, m, wasmhost.Config{})
		const mismatch = "error status returned by host: cas mismatch"
		steps := []struct {
			host *wasmhost.Host
			want string // counter after the increment, result of the set, result of the stale set
		}{
			{a, "1 ok " + mismatch},
			{b, "2 ok " + mismatch},
			{a, "3 ok " + mismatch},
			{private, "1 ok " + mismatch},
		}
		for i, st := range steps {
			s := st.host.NewHTTPStream(nil)
			if _, err := s.RequestHeaders([][2]string{{"x-op", "shared"}}, true); err != nil {
				t.Fatal(err)
			}
			if got, _ := header(s.RequestHeadersNow(), "x-shared"); got != st.want {
				t.Errorf("step %d: x-shared = %q, want %q", i, got, st.want)
			}
		}
		if v, cas, ok := shared.Get("probe_key"); !ok || string(v) != "3" || cas != 3 {
			t.Errorf("shared probe_key = %q cas %d %v", v, cas, ok)
		}
		if !shared.Set("probe_key", []byte("9"), 3) || shared.Set("probe_key", []byte("x"), 3) {
			t.Error("Shared.Set ignores the CAS token")
		}
	})
}

func TestSharedQueue(t *testing.T) {
	forEachBuild(t, func(t *testing.T, m *wasmhost.Module) {
		h := load(t, m, wasmhost.Config{})
		var ids []uint32
		for range 2 {
			s := h.NewHTTPStream(nil)
			if _, err := s.RequestHeaders([][2]string{{"x-op", "enqueue"}}, true); err != nil {
				t.Fatal(err)
			}
			if got, _ := header(s.RequestHeadersNow(), "x-enqueue"); got != "ok" {
				t.Fatalf("x-enqueue = %q", got)
			}
			ids = append(ids, s.ID())
		}
		if n := h.Shared().QueueLen("", "probe_queue"); n != 2 {
			t.Fatalf("queue length = %d before Flush", n)
		}
		if err := h.Flush(); err != nil {
			t.Fatal(err)
		}
		if n := h.Shared().QueueLen("", "probe_queue"); n != 0 {
			t.Errorf("queue length = %d after proxy_on_queue_ready", n)
		}
		var got []string
		for _, l := range h.Logs() {
			if l.Level == wasmhost.LogInfo && len(l.Message) > 9 && l.Message[:9] == "dequeued " {
				got = append(got, l.Message[9:])
			}
		}
		want := []string{"item-" + itoa(ids[0]), "item-" + itoa(ids[1])}
		if !slices.Equal(got, want) {
			t.Errorf("dequeued %q, want %q", got, want)
		}
	})
}
