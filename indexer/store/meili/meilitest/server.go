// Package meilitest is an in-process stand-in for a Meilisearch server, for tests of code that talks to
// Meilisearch over HTTP.
//
// It implements the subset of Meilisearch's documented API that the meili store uses, and checks every request
// strictly against the documentation: the Authorization header, content types, body shapes (unknown or
// mistyped fields are rejected), index uids, document ids ([A-Za-z0-9_-]{1,511} or integers; one bad id fails
// the whole task), primary keys (inference fails when several fields end in "id"), filterable and sortable
// attributes (set in the settings before a filter or sort may name them) and the filter syntax (package
// meilifilter). Writes are asynchronous tasks processed in order by a background worker, as in Meilisearch;
// failed tasks carry Meilisearch's error object.
//
// Routes: GET /health; POST /indexes; GET and DELETE /indexes/{uid}; GET and PATCH /indexes/{uid}/settings;
// POST /indexes/{uid}/documents (JSON array or object, or NDJSON); POST /indexes/{uid}/documents/fetch;
// POST /indexes/{uid}/documents/delete (by filter); POST /indexes/{uid}/search; GET /indexes/{uid}/stats;
// GET /tasks/{uid}.
//
// Known simplifications, all on the side of being stricter or simpler than Meilisearch: free-text search
// matches whole words and quoted phrases exactly (no typo tolerance, no prefix search), supports only the
// "all" matching strategy for queries of several terms, and ranks hits only by the sort parameter (then by
// insertion order); facets, highlighting, geo search, vectors and API key management are not implemented.
package meilitest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DefaultMaxPayload is Meilisearch's default payload size limit (--http-payload-size-limit, 100 MB).
const DefaultMaxPayload = 100_000_000

// Options configure a Server.
type Options struct {
	// MasterKey, when set, is required as `Authorization: Bearer <key>` on every route but /health.
	MasterKey string
	// MaxPayload bounds request bodies (413 payload_too_large above it); 0 means DefaultMaxPayload.
	MaxPayload int64
	// TaskDelay is how long each task stays enqueued before it is processed, to expose callers that do not
	// wait for their tasks.
	TaskDelay time.Duration
}

// Server is a running stand-in. Its methods are safe for concurrent use.
type Server struct {
	// URL is the base URL of the server, e.g. http://127.0.0.1:41234.
	URL string

	opts Options
	hs   *httptest.Server

	mu      sync.Mutex
	indexes map[string]*index
	tasks   []*task // tasks[i].UID == i
	pending chan *task
	done    chan struct{}
	wg      sync.WaitGroup
}

// Start starts a stand-in on a loopback port.
func Start(opts Options) *Server {
	s := newServer(opts)
	s.hs = httptest.NewServer(s)
	s.URL = s.hs.URL
	return s
}

// StartOn starts a stand-in on an address (e.g. one a test reserved earlier), to simulate a server coming up.
func StartOn(addr string, opts Options) (*Server, error) {
	s := newServer(opts)
	s.hs = httptest.NewUnstartedServer(s)
	l, err := listen(addr)
	if err != nil {
		s.hs.Listener.Close()
		s.stop()
		return nil, err
	}
	s.hs.Listener.Close()
	s.hs.Listener = l
	s.hs.Start()
	s.URL = s.hs.URL
	return s, nil
}

func newServer(opts Options) *Server {
	if opts.MaxPayload == 0 {
		opts.MaxPayload = DefaultMaxPayload
	}
	s := &Server{
		opts:    opts,
		indexes: make(map[string]*index),
		pending: make(chan *task, 1<<16),
		done:    make(chan struct{}),
	}
	s.wg.Add(1)
	go s.worker()
	return s
}

// Close stops the server and its task worker.
func (s *Server) Close() {
	s.hs.Close()
	s.stop()
}

func (s *Server) stop() {
	close(s.done)
	s.wg.Wait()
}

// apiError is Meilisearch's error object.
type apiError struct {
	Message string `json:"message"`
	Code    string `json:"code"`
	Type    string `json:"type"`
	Link    string `json:"link"`
	status  int
}

func (e *apiError) Error() string { return e.Code + ": " + e.Message }

// errorf builds an error object; the type follows from the status (auth for 401/403, internal for 5xx).
func errorf(status int, code, format string, args ...any) *apiError {
	typ := "invalid_request"
	switch {
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		typ = "auth"
	case status >= 500:
		typ = "internal"
	}
	return &apiError{
		Message: fmt.Sprintf(format, args...),
		Code:    code,
		Type:    typ,
		Link:    "https://docs.meilisearch.com/errors#" + code,
		status:  status,
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, err error) {
	var ae *apiError
	if !errors.As(err, &ae) {
		ae = errorf(http.StatusInternalServerError, "internal", "%v", err)
	}
	writeJSON(w, ae.status, ae)
}

var (
	indexUIDRe = regexp.MustCompile(`^[A-Za-z0-9_-]{1,400}$`)
	docIDRe    = regexp.MustCompile(`^[A-Za-z0-9_-]{1,511}$`)
)

// ServeHTTP routes a request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	if r.URL.Path == "/health" && r.Method == http.MethodGet {
		writeJSON(w, http.StatusOK, map[string]string{"status": "available"})
		return
	}
	if err := s.authorize(r); err != nil {
		writeError(w, err)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, s.opts.MaxPayload)
	var err error
	switch {
	case len(parts) == 2 && parts[0] == "tasks" && r.Method == http.MethodGet:
		err = s.getTask(w, parts[1])
	case len(parts) == 1 && parts[0] == "indexes" && r.Method == http.MethodPost:
		err = s.createIndex(w, r)
	case len(parts) >= 2 && parts[0] == "indexes":
		err = s.routeIndex(w, r, parts[1], strings.Join(parts[2:], "/"))
	default:
		err = notFound(r)
	}
	if err != nil {
		writeError(w, err)
	}
}

func notFound(r *http.Request) error {
	return errorf(http.StatusNotFound, "not_found", "meilitest: no route %s %s", r.Method, r.URL.Path)
}

func (s *Server) routeIndex(w http.ResponseWriter, r *http.Request, uid, rest string) error {
	if !indexUIDRe.MatchString(uid) {
		return errorf(http.StatusBadRequest, "invalid_index_uid",
			"`%s` is not a valid index uid. Index uid can be an integer or a string containing only alphanumeric "+
				"characters, hyphens (-) and underscores (_), and can not be more than 400 bytes.", uid)
	}
	switch {
	case rest == "" && r.Method == http.MethodGet:
		return s.getIndex(w, uid)
	case rest == "" && r.Method == http.MethodDelete:
		return s.deleteIndex(w, r, uid)
	case rest == "settings" && r.Method == http.MethodGet:
		return s.getSettings(w, uid)
	case rest == "settings" && r.Method == http.MethodPatch:
		return s.updateSettings(w, r, uid)
	case rest == "documents" && r.Method == http.MethodPost:
		return s.addDocuments(w, r, uid)
	case rest == "documents/fetch" && r.Method == http.MethodPost:
		return s.fetchDocuments(w, r, uid)
	case rest == "documents/delete" && r.Method == http.MethodPost:
		return s.deleteByFilter(w, r, uid)
	case rest == "search" && r.Method == http.MethodPost:
		return s.search(w, r, uid)
	case rest == "stats" && r.Method == http.MethodGet:
		return s.getStats(w, r, uid)
	}
	return notFound(r)
}

func (s *Server) authorize(r *http.Request) error {
	if s.opts.MasterKey == "" {
		return nil
	}
	h := r.Header.Get("Authorization")
	if h == "" {
		return errorf(http.StatusUnauthorized, "missing_authorization_header",
			"The Authorization header is missing. It must use the bearer authorization method.")
	}
	key, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || key != s.opts.MasterKey {
		return errorf(http.StatusForbidden, "invalid_api_key", "The provided API key is invalid.")
	}
	return nil
}

// requireJSON checks that the request declares a JSON body.
func requireJSON(r *http.Request) error {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return errorf(http.StatusUnsupportedMediaType, "missing_content_type",
			"A Content-Type header is missing. Accepted values for the Content-Type header are: `application/json`")
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/json" {
		return errorf(http.StatusUnsupportedMediaType, "invalid_content_type",
			"The Content-Type `%s` is invalid. Accepted values for the Content-Type header are: `application/json`", ct)
	}
	return nil
}

// readBody reads the request body, mapping an oversized body to payload_too_large.
func readBody(r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(r.Body)
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, errorf(http.StatusRequestEntityTooLarge, "payload_too_large",
			"The provided payload reached the size limit. The maximum accepted payload size is %d bytes.", mbe.Limit)
	}
	if err != nil {
		return nil, errorf(http.StatusBadRequest, "bad_request", "reading the body: %v", err)
	}
	return b, nil
}

// decodeObject reads a JSON object body whose keys must all be in allowed (null values are accepted and
// dropped, as Meilisearch treats null optional parameters as absent).
func decodeObject(r *http.Request, allowed []string) (map[string]json.RawMessage, error) {
	if err := requireJSON(r); err != nil {
		return nil, err
	}
	body, err := readBody(r)
	if err != nil {
		return nil, err
	}
	if len(body) == 0 {
		return nil, errorf(http.StatusBadRequest, "missing_payload", "A json payload is missing.")
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(body, &obj); err != nil || obj == nil {
		return nil, errorf(http.StatusBadRequest, "bad_request", "Invalid value type: expected an object (%v)", err)
	}
	for k, v := range obj {
		if !slices.Contains(allowed, k) {
			return nil, errorf(http.StatusBadRequest, "bad_request", "Unknown field `%s`: expected one of `%s`",
				k, strings.Join(allowed, "`, `"))
		}
		if string(v) == "null" {
			delete(obj, k)
		}
	}
	return obj, nil
}

// field decodes obj[key] into dst (leaving dst unchanged when absent), reporting a mistyped value with code.
func field(obj map[string]json.RawMessage, key string, dst any, code string) error {
	raw, ok := obj[key]
	if !ok {
		return nil
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return errorf(http.StatusBadRequest, code, "Invalid value at `.%s`: %v", key, err)
	}
	return nil
}

func (s *Server) createIndex(w http.ResponseWriter, r *http.Request) error {
	obj, err := decodeObject(r, []string{"uid", "primaryKey"})
	if err != nil {
		return err
	}
	var uid, pk string
	if err := field(obj, "uid", &uid, "invalid_index_uid"); err != nil {
		return err
	}
	if uid == "" {
		return errorf(http.StatusBadRequest, "missing_index_uid", "Missing field `uid`")
	}
	if !indexUIDRe.MatchString(uid) {
		return errorf(http.StatusBadRequest, "invalid_index_uid", "`%s` is not a valid index uid.", uid)
	}
	if err := field(obj, "primaryKey", &pk, "invalid_index_primary_key"); err != nil {
		return err
	}
	return s.enqueue(w, uid, "indexCreation", map[string]any{"primaryKey": nullable(pk)}, func(t *task) *apiError {
		if s.indexes[uid] != nil {
			return errorf(http.StatusConflict, "index_already_exists", "Index `%s` already exists.", uid)
		}
		s.indexes[uid] = newIndex(uid, pk, t.EnqueuedAt)
		return nil
	})
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func (s *Server) getIndex(w http.ResponseWriter, uid string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ix, err := s.index(uid)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"uid": ix.uid, "primaryKey": nullable(ix.primaryKey),
		"createdAt": ix.createdAt.Format(time.RFC3339Nano), "updatedAt": ix.updatedAt.Format(time.RFC3339Nano),
	})
	return nil
}

// index returns an existing index; s.mu must be held.
func (s *Server) index(uid string) (*index, error) {
	ix := s.indexes[uid]
	if ix == nil {
		return nil, errorf(http.StatusNotFound, "index_not_found", "Index `%s` not found.", uid)
	}
	return ix, nil
}

// deleteIndex handles DELETE /indexes/{uid}.
func (s *Server) deleteIndex(w http.ResponseWriter, r *http.Request, uid string) error {
	if r.ContentLength > 0 {
		return errorf(http.StatusBadRequest, "bad_request", "meilitest: %s %s takes no body", r.Method, r.URL.Path)
	}
	return s.enqueue(w, uid, "indexDeletion", map[string]any{"deletedDocuments": nil}, func(t *task) *apiError {
		ix := s.indexes[uid]
		if ix == nil {
			return errorf(http.StatusNotFound, "index_not_found", "Index `%s` not found.", uid)
		}
		t.Details["deletedDocuments"] = len(ix.docs)
		delete(s.indexes, uid)
		return nil
	})
}

// getStats handles GET /indexes/{uid}/stats. As in Meilisearch, fieldDistribution counts the documents holding
// each top-level field only: the dotted names of nested fields are not listed (meilisearch/meilisearch#5717).
func (s *Server) getStats(w http.ResponseWriter, r *http.Request, uid string) error {
	if r.ContentLength > 0 {
		return errorf(http.StatusBadRequest, "bad_request", "meilitest: %s %s takes no body", r.Method, r.URL.Path)
	}
	for k := range r.URL.Query() {
		return errorf(http.StatusBadRequest, "bad_request", "Unknown parameter `%s`", k)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ix, err := s.index(uid)
	if err != nil {
		return err
	}
	dist := map[string]int{}
	size := 0
	for _, d := range ix.docs {
		for k := range d.obj {
			dist[k]++
		}
		b, _ := json.Marshal(d.obj)
		size += len(b)
	}
	avg := 0
	if len(ix.docs) > 0 {
		avg = size / len(ix.docs)
	}
	indexing := false
	for _, t := range s.tasks {
		if t.IndexUID == uid && (t.Status == "enqueued" || t.Status == "processing") {
			indexing = true
			break
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"numberOfDocuments": len(ix.docs), "rawDocumentDbSize": size, "avgDocumentSize": avg,
		"isIndexing": indexing, "numberOfEmbeddings": 0, "numberOfEmbeddedDocuments": 0,
		"fieldDistribution": dist,
	})
	return nil
}

func listen(addr string) (net.Listener, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("meilitest: listen on %s: %w", addr, err)
	}
	return l, nil
}

func parseUint(s string) (int, bool) {
	n, err := strconv.Atoi(s)
	return n, err == nil && n >= 0
}
