package api

import "net/http"

// DependenciesResponse is the body of GET /api/v1/dependencies: the service graph of the matching traces.
type DependenciesResponse struct {
	Query string `json:"query"`
	// Since and Until are the window the traces started in, in Unix microseconds (the query's, or the
	// DefaultDependencyLookback before now when it names none).
	Since int64 `json:"since"`
	Until int64 `json:"until"`
	// Data is the graph's edges, most traces first, in jaeger-query's model (as GET /api/dependencies).
	Data []JaegerDependency `json:"data"`
	// Partial says the span join was cut at store.MaxLimit traces: counts are then lower bounds.
	Partial bool `json:"partial,omitempty"`
}

// queryDependencies answers GET /api/v1/dependencies?q=QUERY: the edges (querysvc.Dependency) of the traces
// the query matches, trace and span conditions joined as in a search (querysvc.Service.QueryDependencies).
// An empty q matches every trace; a query without since= covers the DefaultDependencyLookback before now.
// Query errors answer 400 with their position, as GET /api/v1/search does.
func (s *Server) queryDependencies(w http.ResponseWriter, r *http.Request) {
	now := s.now()
	src, q, ok := s.compileQ(w, r, now)
	if !ok {
		return
	}
	if q.Since == 0 {
		q.Since = now.Add(-DefaultDependencyLookback).UnixMicro()
	}
	if q.Until == 0 {
		q.Until = now.UnixMicro()
	}
	deps, partial, err := s.svc.QueryDependencies(r.Context(), q)
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	out := DependenciesResponse{Query: src, Since: q.Since, Until: q.Until, Data: make([]JaegerDependency, len(deps)), Partial: partial}
	for i, d := range deps {
		out.Data[i] = JaegerDependency{Parent: d.Parent, Child: d.Child, CallCount: d.CallCount}
	}
	writeJSON(w, http.StatusOK, out)
}
