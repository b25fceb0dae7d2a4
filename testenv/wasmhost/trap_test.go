package wasmhost_test

import (
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
