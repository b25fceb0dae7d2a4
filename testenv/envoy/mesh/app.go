package mesh

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// propagated are the request headers an instrumented app copies from its inbound request to its outbound
// calls (W3C trace context and baggage, and Istio's default B3 headers).
var propagated = []string{
	"traceparent", "tracestate", "baggage",
	"b3", "x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid", "x-b3-sampled", "x-b3-flags",
	"x-request-id",
}

// maxSeen bounds the request headers an App remembers.
const maxSeen = 256

// App is a small HTTP service of the chain. It answers every request; when it has a next hop it first
// calls the next service through its sidecar's outbound listener, propagating trace headers, and answers
// with that call's status. The last app answers 200, or the status given by the query parameter "status".
type App struct {
	Name string

	ln     net.Listener
	srv    *http.Server
	client *http.Client
	next   string // host:port of the sidecar's outbound listener; empty for the last app
	nextSv string // the next service's name (the Host of the outbound call)

	mu   sync.Mutex
	seen []http.Header
}

func newApp(name string) (*App, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	a := &App{
		Name: name,
		ln:   ln,
		client: &http.Client{
			Timeout:   30 * time.Second,
			Transport: &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: time.Minute},
		},
	}
	a.srv = &http.Server{Handler: a, ReadHeaderTimeout: 10 * time.Second}
	return a, nil
}

// Addr is the app's listening address.
func (a *App) Addr() string { return a.ln.Addr().String() }

// serve starts answering; the listener already accepts (connections queue until then).
func (a *App) serve() {
	go func() { _ = a.srv.Serve(a.ln) }()
}

func (a *App) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	a.client.CloseIdleConnections()
	if err := a.srv.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Seen returns copies of the request headers the app received, oldest first (the last 256).
func (a *App) Seen() []http.Header {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]http.Header, len(a.seen))
	for i, h := range a.seen {
		out[i] = h.Clone()
	}
	return out
}

// ServeHTTP implements the app.
func (a *App) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	if len(a.seen) == maxSeen {
		a.seen = append(a.seen[:0], a.seen[1:]...)
	}
	a.seen = append(a.seen, r.Header.Clone())
	a.mu.Unlock()
	_, _ = io.Copy(io.Discard, r.Body)

	if a.next == "" {
		status := http.StatusOK
		if s, err := strconv.Atoi(r.URL.Query().Get("status")); err == nil && s >= 200 && s <= 599 {
			status = s
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, a.Name+"\n")
		return
	}

	req, err := http.NewRequestWithContext(r.Context(), r.Method, "http://"+a.next+r.URL.RequestURI(), nil)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	req.Host = a.nextSv
	for _, h := range propagated {
		if v := r.Header.Values(h); len(v) > 0 {
			req.Header[http.CanonicalHeaderKey(h)] = v
		}
	}
	resp, err := a.client.Do(req)
	if err != nil {
		http.Error(w, fmt.Sprintf("%s -> %s: %v", a.Name, a.nextSv, err), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	w.WriteHeader(resp.StatusCode)
	_, _ = io.WriteString(w, a.Name+" > "+strings.TrimSpace(string(body))+"\n")
}
