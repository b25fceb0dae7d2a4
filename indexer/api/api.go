// Package api serves the indexer's read side over HTTP: a JSON search API in the meshtrace query language, a
// Jaeger-compatible query API (so Grafana's Jaeger data source can browse meshtrace), and a small web page.
//
// Routes:
//
//	GET /api/v1/search?q=QUERY[&target=spans|traces][&limit=N][&offset=N]
//	GET /api/v1/traces/{id}
//	GET /api/services, /api/services/{service}/operations, /api/operations?service=S
//	GET /api/traces?service=&operation=&tags=&minDuration=&maxDuration=&start=&end=&lookback=&limit=
//	GET /api/traces/{id}
//	GET /healthz, GET / (web page)
package api

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/meshtrace/meshtrace/indexer/document"
	"github.com/meshtrace/meshtrace/indexer/query"
	"github.com/meshtrace/meshtrace/indexer/store"
	"github.com/meshtrace/meshtrace/indexer/tracefetch"
)

// Server answers searches from a store. Create it with New; it is an http.Handler.
type Server struct {
	store store.Store
	log   *slog.Logger
	now   func() time.Time
	mux   *http.ServeMux
}

// New returns the API server for st.
func New(st store.Store, log *slog.Logger) *Server {
	if log == nil {
		log = slog.Default()
	}
	s := &Server{store: st, log: log, now: time.Now, mux: http.NewServeMux()}
	s.mux.HandleFunc("GET /api/v1/search", s.search)
	s.mux.HandleFunc("GET /api/v1/traces/{id}", s.trace)
	s.mux.HandleFunc("GET /api/services", s.jaegerServices)
	s.mux.HandleFunc("GET /api/services/{service}/operations", s.jaegerOperations)
	s.mux.HandleFunc("GET /api/operations", s.jaegerOperations)
	s.mux.HandleFunc("GET /api/traces", s.jaegerSearch)
	s.mux.HandleFunc("GET /api/traces/{id}", s.jaegerTrace)
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) })
	s.mux.Handle("GET /", webHandler())
	return s
}

// ServeHTTP routes a request to the API, the Jaeger API or the web page.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// SearchResponse is the body of GET /api/v1/search.
type SearchResponse struct {
	Query   string           `json:"query"`
	Target  string           `json:"target"` // "spans" or "traces"
	Total   int              `json:"total"`
	Partial bool             `json:"partial,omitempty"` // a scope join was cut at store.MaxLimit traces
	Spans   []document.Span  `json:"spans,omitempty"`
	Traces  []document.Trace `json:"traces,omitempty"`
}

// TraceResponse is the body of GET /api/v1/traces/{id}: the trace document and its spans in start order.
type TraceResponse struct {
	Trace document.Trace  `json:"trace"`
	Spans []document.Span `json:"spans"`
}

// ErrorResponse is the body of every error of the /api/v1 routes. Position is the 1-based offset of a query
// error.
type ErrorResponse struct {
	Error    string `json:"error"`
	Position int    `json:"position,omitempty"`
}

func (s *Server) search(w http.ResponseWriter, r *http.Request) {
	v := r.URL.Query()
	src := v.Get("q")
	q, err := query.Compile(src, s.now())
	if err != nil {
		resp := ErrorResponse{Error: err.Error()}
		var qe *query.Error
		if errors.As(err, &qe) {
			resp.Position = qe.Pos
		}
		writeJSON(w, http.StatusBadRequest, resp)
		return
	}
	switch t := v.Get("target"); t {
	case "":
	case "spans":
		q.Target = query.SpanScope
	case "traces":
		q.Target = query.TraceScope
	default:
		writeJSON(w, http.StatusBadRequest, ErrorResponse{Error: `target must be "spans" or "traces", not ` + strconv.Quote(t)})
		return
	}
	page, err := pageOf(v.Get("limit"), v.Get("offset"))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, ErrorResponse{Error: err.Error()})
		return
	}
	res, err := store.Execute(r.Context(), s.store, q, page)
	if err != nil {
		s.storeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, SearchResponse{Query: src, Target: q.Target.String() + "s", Total: res.Total, Partial: res.Partial,
		Spans: res.Spans, Traces: res.Traces})
}

func pageOf(limit, offset string) (store.Page, error) {
	var p store.Page
	var err error
	if limit != "" {
		if p.Limit, err = strconv.Atoi(limit); err != nil || p.Limit < 0 || p.Limit > store.MaxLimit {
			return p, errors.New("limit must be an integer from 0 to " + strconv.Itoa(store.MaxLimit))
		}
	}
	if offset != "" {
		if p.Offset, err = strconv.Atoi(offset); err != nil || p.Offset < 0 {
			return p, errors.New("offset must be a non-negative integer")
		}
	}
	return p, nil
}

func (s *Server) trace(w http.ResponseWriter, r *http.Request) {
	id, ok := traceID(r.PathValue("id"))
	if !ok {
		writeJSON(w, http.StatusBadRequest, ErrorResponse{Error: "trace id must be 32 hexadecimal digits"})
		return
	}
	doc, spans, found, err := tracefetch.Trace(r.Context(), s.store, id)
	if err != nil {
		s.storeError(w, err)
		return
	}
	if !found {
		writeJSON(w, http.StatusNotFound, ErrorResponse{Error: "trace " + id + " not found"})
		return
	}
	writeJSON(w, http.StatusOK, TraceResponse{Trace: doc, Spans: spans})
}

// traceID normalises a trace id: lower-case hex, shorter ids left-padded to 32 digits as Jaeger does.
func traceID(s string) (string, bool) {
	if s == "" || len(s) > 32 {
		return "", false
	}
	b := []byte(s)
	for i, c := range b {
		switch {
		case c >= '0' && c <= '9', c >= 'a' && c <= 'f':
		case c >= 'A' && c <= 'F':
			b[i] = c + 'a' - 'A'
		default:
			return "", false
		}
	}
	const zeros = "00000000000000000000000000000000"
	return zeros[:32-len(b)] + string(b), true
}

func (s *Server) storeError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, store.ErrBadRequest):
		writeJSON(w, http.StatusBadRequest, ErrorResponse{Error: err.Error()})
	case errors.Is(err, context.Canceled):
		writeJSON(w, 499, ErrorResponse{Error: "request cancelled"})
	default:
		s.log.Error("search failed", "err", err)
		writeJSON(w, http.StatusInternalServerError, ErrorResponse{Error: err.Error()})
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v) // the client may be gone; nothing else to do
}
