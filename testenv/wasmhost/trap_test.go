package wasmhost_test

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/meshtrace/meshtrace/testenv/wasmhost"
)

func itoa(v uint32) string { return strconv.FormatUint(uint64(v), 10) }

func TestGuestPanicIsAnError(t *testing.T) {
	forEachBuild(t, func(t *testing.T, m *wasmhost.Module) {
		h := load(t, m, wasmhost.Config{})
		s := h.NewHTTPStream(nil)
		_, err := s.RequestHeaders([][2]string{{"x-op", "panic"}}, true)
		if err == nil {
			t.Fatal("a guest panic returned no error")
		}
		for _, want := range []string{"proxy_on_request_headers", "probe panic on request " + itoa(s.ID())} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q lacks %q", err, want)
			}
		}
		if h.Err() == nil {
			t.Error("Host.Err is nil after a trap")
		}
		next := h.NewHTTPStream(nil)
		if _, err2 := next.RequestHeaders(nil, true); err2 == nil || err2.Error() != err.Error() {
			t.Errorf("call after a trap = %v, want the trap error again", err2)
		}
		if err := h.Tick(); err == nil {
			t.Error("Tick after a trap is not an error")
		}
	})
}

// TestMinimalPlugin loads testdata/minimal (no SDK, see minimal.wat): an import the host does not
// implement is linked to a stub that returns Unimplemented and logs, and a trap in a callback is an error.
func TestMinimalPlugin(t *testing.T) {
	wasm, err := os.ReadFile("testdata/minimal/minimal.wasm")
	if err != nil {
		t.Fatal(err)
	}
	h, err := wasmhost.Load(t.Context(), wasm, wasmhost.Config{})
	if err != nil {
		t.Fatalf("load: %v (the stub must return Unimplemented)", err)
	}
	defer h.Close(t.Context())
	want := wasmhost.LogEntry{Level: wasmhost.LogError, Message: "wasmhost: unimplemented host function proxy_get_log_level"}
	if logs := h.Logs(); len(logs) != 1 || logs[0] != want {
		t.Errorf("logs = %v, want %v", logs, want)
	}
	_, err = h.NewHTTPStream(nil).RequestHeaders(nil, true)
	if err == nil || !strings.Contains(err.Error(), "proxy_on_request_headers: wasm error: unreachable") {
		t.Errorf("trap = %v", err)
	}
	if _, _, err := h.NewConnection(nil); err == nil || !strings.Contains(err.Error(), "unreachable") {
		t.Errorf("after a trap NewConnection = %v, want the trap again", err)
	}
}
