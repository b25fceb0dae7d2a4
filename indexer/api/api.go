// Package api serves the indexer's read side over HTTP: a JSON search API in the meshtrace query language, a
// Jaeger-compatible query API (so Grafana's Jaeger data source can browse meshtrace), and a small web page.
//
// Routes:
//
//	GET /api/v1/search?q=QUERY[&target=spans|traces][&limit=N][&offset=N]
//	GET /api/v1/traces/{id}
//	GET /api/v1/dependencies?q=QUERY
//	GET /api/v1/facets?q=QUERY&field=FIELD[&limit=N]
//	GET /api/services, /api/services/{service}/operations, /api/operations?service=S
//	GET /api/traces?service=&operation=&tags=&minDuration=&maxDuration=&start=&end=&lookback=&limit=
//	GET /api/traces?traceID=A&traceID=B
//	GET /api/traces/{id}
//	GET /api/dependencies?endTs=&lookback=
//	GET /api/v3/services, /api/v3/operations, /api/v3/traces, /api/v3/traces/{trace_id}, /api/v3/trace-summaries
//	GET /healthz, GET / (web page)
//	GET /api/v1/ingest (Config.IngestStats), GET /metrics (Config.Metrics), when configured
//
// Every route that reads the store runs under a time budget (Config.QueryTimeout, DefaultQueryTimeout by
// default): when it runs out, the store work is cancelled and the route answers 503 Service Unavailable
// with a JSON error saying the query exceeded its time budget and Retry-After set to the budget in whole
// seconds (rounded up). A client that
// disconnects cancels its store work the same way. Queries are bounded before they run by the limits of
// package query (length, terms, nesting, sort keys): a query past one answers 400 Bad Request with the
// position of the error. Error bodies are ErrorResponse on the /api/v1 routes and jaeger-query's envelope
// (data null, errors [{code, msg}]) on the Jaeger routes.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/meshtrace/meshtrace/indexer/auth"
	"github.com/meshtrace/meshtrace/indexer/document"
	"github.com/meshtrace/meshtrace/indexer/query"
	"github.com/meshtrace/meshtrace/indexer/querysvc"
	"github.com/meshtrace/meshtrace/indexer/store"
	"github.com/meshtrace/meshtrace/indexer/tenant"
)

// DefaultQueryTimeout is the time budget of one request's store work when Config.QueryTimeout is 0.
const DefaultQueryTimeout = 10 * time.Second

// Config tunes a Server; the zero value selects the defaults.
type Config struct {
	// QueryTimeout is the time budget of the store work of one request (a search with its scope join, a
	// trace with all its spans, a Jaeger search with every trace it returns). When it runs out the work is
	// cancelled and the request answers 503. Zero or negative means DefaultQueryTimeout.
	QueryTimeout time.Duration
	// IndexLag reports how far the index is behind what was acknowledged (pipeline.Pipeline.Lag): every
	// answer of the search and trace routes tells it, in index_lag_seconds and the X-Meshtrace-Index-Lag
	// header, so a responder knows whether the last seconds are searchable yet. Nil reports 0.
	IndexLag func() time.Duration
	// IngestStats, when set, is served as JSON on GET /api/v1/ingest (the pipeline's counters).
	IngestStats func() any
	// Metrics, when set, receives the query latency histogram (meshtrace_query_duration_seconds by route)
	// and is served on GET /metrics in the Prometheus text format.
	Metrics *prometheus.Registry
	// Logger logs store failures; nil means slog.Default().
	Logger *slog.Logger
	// RollupKeys are the business keys the rollup copies into trace documents (querysvc.Config.Keys).
	RollupKeys []string
	// Auth authenticates every request but the open paths (auth.Config.OpenPaths) and gives the tenant
	// scope its reads are restricted to (package querysvc enforces it); nil: no authentication, every
	// request sees every tenant (auth.New in unauthenticated mode says so in the log).
	Auth *auth.Authenticator
	// HMACKey is the filter's HMAC key (--hmac-key-file): with it, a query's hash("value") is the value as a
	// hashed tag holds it, so a searcher finds hashed values without holding the key. Nil: hash() is refused.
	HMACKey []byte
}

// Server answers searches from a store, reading it only through a querysvc.Service. Create it with New; it
// is an http.Handler.
type Server struct {
	svc     *querysvc.Service
	log     *slog.Logger
	now     func() time.Time
	mux     *http.ServeMux
	handler http.Handler  // mux behind the authentication
	timeout time.Duration // Config.QueryTimeout
	lag     func() time.Duration
	latency *prometheus.HistogramVec
	hmacKey []byte // Config.HMACKey
}

// New returns the API server for st.
func New(st store.Store, c Config) *Server {
	log := c.Logger
	if log == nil {
		log = slog.Default()
	}
	if c.QueryTimeout <= 0 {
		c.QueryTimeout = DefaultQueryTimeout
	}
	if c.IndexLag == nil {
		c.IndexLag = func() time.Duration { return 0 }
	}
	s := &Server{svc: querysvc.New(st, querysvc.Config{Keys: c.RollupKeys}), log: log, now: time.Now, mux: http.NewServeMux(), timeout: c.QueryTimeout, lag: c.IndexLag, hmacKey: c.HMACKey,
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "meshtrace_query_duration_seconds",
			Help: "Duration of API requests that read the store, by route.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 16)},
			[]string{"route"})}
	if c.Metrics != nil {
		c.Metrics.MustRegister(s.latency)
		s.mux.Handle("GET /metrics", promhttp.HandlerFor(c.Metrics, promhttp.HandlerOpts{Registry: c.Metrics}))
	}
	if c.IngestStats != nil {
		s.mux.HandleFunc("GET /api/v1/ingest", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, c.IngestStats()) })
	}
	s.mux.HandleFunc("GET /api/v1/search", s.budget("GET /api/v1/search", s.search))
	s.mux.HandleFunc("GET /api/v1/traces/{id}", s.budget("GET /api/v1/traces/{id}", s.trace))
	s.mux.HandleFunc("GET /api/services", s.budget("GET /api/services", s.jaegerServices))
	s.mux.HandleFunc("GET /api/services/{service}/operations", s.budget("GET /api/services/{service}/operations", s.jaegerOperations))
	s.mux.HandleFunc("GET /api/operations", s.budget("GET /api/operations", s.jaegerOperations))
	s.mux.HandleFunc("GET /api/traces", s.budget("GET /api/traces", s.jaegerSearch))
	s.mux.HandleFunc("GET /api/traces/{id}", s.budget("GET /api/traces/{id}", s.jaegerTrace))
	s.mux.HandleFunc("GET /api/v3/services", s.budget("GET /api/v3/services", s.v3Services))
	s.mux.HandleFunc("GET /api/v3/operations", s.budget("GET /api/v3/operations", s.v3Operations))
	s.mux.HandleFunc("GET /api/v3/traces", s.budget("GET /api/v3/traces", s.v3FindTraces))
	s.mux.HandleFunc("GET /api/v3/traces/{trace_id}", s.budget("GET /api/v3/traces/{trace_id}", s.v3Trace))
	s.mux.HandleFunc("GET /api/v3/trace-summaries", s.budget("GET /api/v3/trace-summaries", s.v3TraceSummaries))
	s.mux.HandleFunc("GET /api/dependencies", s.budget("GET /api/dependencies", s.jaegerDependencies))
	s.mux.HandleFunc("GET /api/v1/dependencies", s.budget("GET /api/v1/dependencies", s.queryDependencies))
	s.mux.HandleFunc("GET /api/v1/facets", s.budget("GET /api/v1/facets", s.facets))
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) })
	s.mux.Handle("GET /", webHandler())
	s.handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mux.ServeHTTP(w, r.WithContext(tenant.NewContext(r.Context(), tenant.All())))
	})
	if c.Auth != nil {
		// The page's own files hold no data: they load without a token, and the page then sends one (or a
		// proxy in front adds it) with each API call.
		authed, page := c.Auth.Middleware(s.mux), webPaths()
		s.handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && page[r.URL.Path] {
				s.mux.ServeHTTP(w, r)
				return
			}
			authed.ServeHTTP(w, r)
		})
	}
	return s
}

// ServeHTTP authenticates a request and routes it to the API, the Jaeger API or the web page.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// errBudget is the cause of the context of a request whose time budget ran out.
var errBudget = errors.New("query time budget exceeded")

// budget runs h with the request's context cancelled after the query timeout (or when the client leaves,
// as before); the stores stop their work when it is.
// It also times the request for the route's latency histogram and tells the index lag in a header.
func (s *Server) budget(route string, h http.HandlerFunc) http.HandlerFunc {
	latency := s.latency.WithLabelValues(route)
	return func(w http.ResponseWriter, r *http.Request) {
		began := time.Now()
		ctx, cancel := context.WithTimeoutCause(r.Context(), s.timeout, errBudget)
		defer cancel()
		w.Header().Set("X-Meshtrace-Index-Lag", s.lag().String())
		h(w, r.WithContext(ctx))
		latency.Observe(time.Since(began).Seconds())
	}
}

// SearchResponse is the body of GET /api/v1/search.
type SearchResponse struct {
	Query   string           `json:"query"`
	Target  string           `json:"target"` // "spans" or "traces"
	Total   int              `json:"total"`
	Partial bool             `json:"partial,omitempty"` // the answer may be incomplete: a scope join cut at store.MaxLimit traces, or a search cut by the store's time limit
	Spans   []document.Span  `json:"spans,omitempty"`
	Traces  []document.Trace `json:"traces,omitempty"`
	// IndexLagSeconds is how long ago the oldest acknowledged span not yet searchable was acknowledged: 0 when
	// everything acknowledged is in the answer's reach.
	IndexLagSeconds float64 `json:"index_lag_seconds"`
}

// TraceResponse is the body of GET /api/v1/traces/{id}: the trace document and its spans in start order.
type TraceResponse struct {
	Trace document.Trace  `json:"trace"`
	Spans []document.Span `json:"spans"`
	// HiddenSpans counts the spans of the trace that belong to tenants the caller may not see (not returned).
	HiddenSpans int `json:"hidden_spans,omitempty"`
	// LinkedFrom are the spans, of this trace or others, that link to its producer spans or their parents: the consumers of its
	// messages, each link with the wait in meshtrace.kafka.time_in_topic_ms (at most 100, in start order).
	LinkedFrom []document.Span `json:"linked_from,omitempty"`
	// IndexLagSeconds is as in SearchResponse: spans of the trace acknowledged within it may still be missing.
	IndexLagSeconds float64 `json:"index_lag_seconds"`
}

// ErrorResponse is the body of every error of the /api/v1 routes. Position is the 1-based offset of a query
// error.
type ErrorResponse struct {
	Error    string `json:"error"`
	Position int    `json:"position,omitempty"`
}

// writeQueryError answers a query that does not compile: 400 with the message and, for a syntax or field
// error, its position.
func writeQueryError(w http.ResponseWriter, err error) {
	resp := ErrorResponse{Error: err.Error()}
	var qe *query.Error
	if errors.As(err, &qe) {
		resp.Position = qe.Pos
	}
	writeJSON(w, http.StatusBadRequest, resp)
}

// compileQ compiles the q parameter of r (relative times counting back from now), answering a query that
// does not compile itself (writeQueryError): ok is false when it did.
func (s *Server) compileQ(w http.ResponseWriter, r *http.Request, now time.Time) (src string, q *query.Query, ok bool) {
	src = r.URL.Query().Get("q")
	q, err := query.Compile(src, now, query.WithHMACKey(s.hmacKey))
	if err != nil {
		writeQueryError(w, err)
		return src, nil, false
	}
	return src, q, true
}

func (s *Server) search(w http.ResponseWriter, r *http.Request) {
	src, q, ok := s.compileQ(w, r, s.now())
	if !ok {
		return
	}
	v := r.URL.Query()
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
	res, err := s.svc.Search(r.Context(), q, page)
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, SearchResponse{Query: src, Target: q.Target.String() + "s", Total: res.Total, Partial: res.Partial,
		IndexLagSeconds: s.lag().Seconds(),
		Spans:           res.Spans, Traces: res.Traces})
}

func pageOf(limit, offset string) (querysvc.Page, error) {
	var p querysvc.Page
	var err error
	if p.Limit, err = limitOf(limit, store.MaxLimit); err != nil {
		return p, err
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
	t, found, err := s.svc.Trace(r.Context(), id)
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	if !found {
		writeJSON(w, http.StatusNotFound, ErrorResponse{Error: "trace " + id + " not found"})
		return
	}
	linked, err := s.svc.LinkedFrom(r.Context(), t.Spans)
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, TraceResponse{Trace: t.Trace, Spans: t.Spans, HiddenSpans: t.Hidden, LinkedFrom: linked,
		IndexLagSeconds: s.lag().Seconds()})
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

// storeError answers a failed store call of an /api/v1 route.
func (s *Server) storeError(w http.ResponseWriter, r *http.Request, err error) {
	code, msg := s.failure(w, r, err)
	writeJSON(w, code, ErrorResponse{Error: msg})
}

// failure classifies the error of a store call made for r: the status and the message to answer. The
// request's context decides first, whatever error the store wrapped it in: a spent time budget is 503 (and
// sets Retry-After on w), a client gone is 499.
func (s *Server) failure(w http.ResponseWriter, r *http.Request, err error) (int, string) {
	ctx := r.Context()
	switch {
	case errors.Is(context.Cause(ctx), errBudget):
		w.Header().Set("Retry-After", strconv.Itoa(int((s.timeout+time.Second-1)/time.Second)))
		s.log.Warn("query exceeded its time budget", "path", r.URL.Path, "budget", s.timeout)
		return http.StatusServiceUnavailable, fmt.Sprintf("the query exceeded its time budget of %s and was stopped: narrow it (a shorter time window, more conditions) or retry later", s.timeout)
	case ctx.Err() != nil || errors.Is(err, context.Canceled):
		return statusClientClosedRequest, "request cancelled"
	case errors.Is(err, store.ErrBadRequest):
		return http.StatusBadRequest, err.Error()
	}
	s.log.Error("search failed", "path", r.URL.Path, "err", err)
	return http.StatusInternalServerError, err.Error()
}

// statusClientClosedRequest is the status recorded for a request whose client left before the answer (nginx's
// 499: no client sees it, but access logs and the latency histogram do).
const statusClientClosedRequest = 499

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v) // the client may be gone; nothing else to do
}
