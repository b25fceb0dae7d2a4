package api

import (
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// DefaultDependencyLookback is the window of GET /api/dependencies without lookback: jaeger-query's.
const DefaultDependencyLookback = 24 * time.Hour

// JaegerDependency is an edge of the service graph in jaeger-query's model (model.DependencyLink).
type JaegerDependency struct {
	Parent    string `json:"parent"`
	Child     string `json:"child"`
	CallCount int    `json:"callCount"` // traces in the window holding the edge (querysvc.Dependency)
}

// jaegerDependencies answers GET /api/dependencies?endTs=MS&lookback=MS as jaeger-query does (the Jaeger
// UI's System Architecture tab, Grafana's "Dependency graph" query type): the edges of the traces that
// started in [endTs-lookback, endTs], both in Unix milliseconds, endTs defaulting to now and lookback to
// DefaultDependencyLookback. callCount counts traces, not calls (see querysvc.Dependency).
func (s *Server) jaegerDependencies(w http.ResponseWriter, r *http.Request) {
	end := s.now()
	lookback := DefaultDependencyLookback
	q := r.URL.Query()
	if v := q.Get("endTs"); v != "" {
		ms, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			writeJaeger(w, http.StatusBadRequest, fmt.Sprintf("unable to parse param 'endTs': %v", err), 0)
			return
		}
		end = time.UnixMilli(ms)
	}
	if v := q.Get("lookback"); v != "" {
		ms, err := strconv.ParseInt(v, 10, 64)
		if err != nil || ms < 0 {
			if err == nil {
				err = fmt.Errorf("negative lookback %d", ms)
			}
			writeJaeger(w, http.StatusBadRequest, fmt.Sprintf("unable to parse param 'lookback': %v", err), 0)
			return
		}
		lookback = time.Duration(min(ms, int64(1<<63-1)/int64(time.Millisecond))) * time.Millisecond
	}
	deps, err := s.svc.Dependencies(r.Context(), end.Add(-lookback), end)
	if err != nil {
		s.jaegerStoreError(w, r, err)
		return
	}
	out := make([]JaegerDependency, len(deps))
	for i, d := range deps {
		out[i] = JaegerDependency{Parent: d.Parent, Child: d.Child, CallCount: d.CallCount}
	}
	writeJaeger(w, http.StatusOK, out, 0)
}
