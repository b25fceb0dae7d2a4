package wasmhost_test

import (
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/meshtrace/meshtrace/testenv/wasmhost"
)

// TestParallelHostsShareData runs one Host per goroutine (as Envoy runs one VM per worker) on a common
// Shared store. Every read-increment-write carries the CAS token, so the final counter must equal the
// number of writes the store accepted: a lost update or a torn CAS would break the equality.
func TestParallelHostsShareData(t *testing.T) {
	const workers, rounds = 4, 40
	forEachBuild(t, func(t *testing.T, m *wasmhost.Module) {
		shared := wasmhost.NewShared()
		shared.Set("probe_key", []byte("0"), 0) // from here on every write carries a token
		hosts := make([]*wasmhost.Host, workers)
		for i := range hosts {
			hosts[i] = load(t, m, wasmhost.Config{Shared: shared})
		}
		accepted := make([]int, workers)
		var wg sync.WaitGroup
		for i, h := range hosts {
			wg.Go(func() {
				for range rounds {
					s := h.NewHTTPStream(nil)
					if _, err := s.RequestHeaders([][2]string{{"x-op", "shared"}}, true); err != nil {
						t.Error(err)
						return
					}
					got, _ := header(s.RequestHeadersNow(), "x-shared")
					f := strings.Fields(got)
					if len(f) < 2 {
						t.Errorf("x-shared = %q, want the value read and the write's result", got)
						return
					}
					if f[1] == "ok" {
						accepted[i]++
					}
					if err := s.Complete(); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		total := 0
		for _, n := range accepted {
			total += n
		}
		v, _, _ := shared.Get("probe_key")
		if got, _ := strconv.Atoi(string(v)); got != total || total == 0 {
			t.Errorf("counter = %s, accepted writes = %d", v, total)
		}
		for _, h := range hosts {
			if n := h.LiveContexts(); n != 1 {
				t.Errorf("LiveContexts = %d", n)
			}
		}
	})
}
