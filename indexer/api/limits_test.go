package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/indexer/document"
	"github.com/meshtrace/meshtrace/indexer/query"
	"github.com/meshtrace/meshtrace/indexer/store"
)

// TestQueryLimits checks that a query past a limit of package query answers 400 with the error's position,
// before any store work, on the search API and on the Jaeger search.
func TestQueryLimits(t *testing.T) {
	srv := httptest.NewServer(New(&blockingStore{calls: make(chan error, 16)}, Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}))
	t.Cleanup(srv.Close)
	terms := strings.TrimSpace(strings.Repeat("w ", query.MaxTerms+1))
	search := func(q string) string { return "/api/v1/search?q=" + url.QueryEscape(q) }
	tests := []struct {
		name string
		path string
		pos  int // 0: the Jaeger route, whose errors carry the position in the message only
		want string
	}{
		{"query length", search(strings.Repeat("sort=start ", 1200)), query.MaxQueryBytes + 1, "query is 13200 bytes long: the limit is 4096 bytes"},
		{"terms", search(terms), 2*query.MaxTerms + 1, "too many terms: the limit is 256"},
		{"depth", search(strings.Repeat("(", 100) + "a=1" + strings.Repeat(")", 100)), query.MaxDepth + 1, "nested too deeply: the limit is 32 levels"},
		{"sort keys", search("sort=start sort=end sort=duration sort=trace.start sort=trace.end sort=trace.duration sort=trace.span_count sort=trace.error_count sort=-start"),
			132, "too many sort keys: the limit is 8"},
		{"repeated sort key", search("sort=start sort=-start"), 17, `sort key "-start" repeats the sort key at position 6`},
		{"Jaeger query length", "/api/traces?service=" + strings.Repeat("s", query.MaxQueryBytes), 0, "at position 4097: query is 4106 bytes long: the limit is 4096 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := fetch(t, srv.URL+tt.path)
			if resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("status %d, want 400; body %s", resp.StatusCode, body)
			}
			var msg string
			var pos int
			if tt.pos == 0 {
				var e jaegerResponse
				if err := json.Unmarshal(body, &e); err != nil || len(e.Errors) != 1 {
					t.Fatalf("body %s: %v", body, err)
				}
				msg = e.Errors[0].Message
			} else {
				var e ErrorResponse
				if err := json.Unmarshal(body, &e); err != nil {
					t.Fatalf("body %s: %v", body, err)
				}
				msg, pos = e.Error, e.Position
			}
			if pos != tt.pos || !strings.Contains(msg, tt.want) {
				t.Errorf("error %q at position %d, want %q at position %d", msg, pos, tt.want, tt.pos)
			}
		})
	}
}

// blockingStore is a store.Store whose reads block until their context ends; each reports its context's
// error on calls when it returns.
type blockingStore struct{ calls chan error }

func (b *blockingStore) block(ctx context.Context) error {
	<-ctx.Done()
	b.calls <- ctx.Err()
	return fmt.Errorf("blocking store: %w", ctx.Err())
}

func (b *blockingStore) Search(ctx context.Context, _ store.Request) (store.Result, error) {
	return store.Result{}, b.block(ctx)
}

func (b *blockingStore) GetTraces(ctx context.Context, _ []string) ([]document.Trace, error) {
	return nil, b.block(ctx)
}

func (b *blockingStore) Facet(ctx context.Context, _ store.Index, _ query.Expr, _ string, _ int) ([]store.FacetCount, error) {
	return nil, b.block(ctx)
}

func (b *blockingStore) Write(context.Context, []document.Span, []document.Trace) error { return nil }
func (b *blockingStore) DeleteBefore(context.Context, time.Time, query.Expr) error      { return nil }
func (b *blockingStore) Close() error                                                   { return nil }
func (b *blockingStore) Fields(context.Context) ([]string, error)                       { return nil, nil }

// TestQueryTimeout checks that every route reading the store answers 503 with Retry-After and a JSON error
// once its time budget is spent, and that the store sees its context end (the work stops).
func TestQueryTimeout(t *testing.T) {
	const budget = 200 * time.Millisecond
	st := &blockingStore{calls: make(chan error, 16)}
	srv := httptest.NewServer(New(st, Config{QueryTimeout: budget, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}))
	t.Cleanup(srv.Close)
	tests := []struct {
		path   string
		jaeger bool
	}{
		{"/api/v1/search?q=" + url.QueryEscape("service=checkout sort=-duration"), false},
		{"/api/v1/search?q=" + url.QueryEscape("service=checkout trace.duration>1s"), false}, // scope join: two searches
		{"/api/v1/traces/" + slowTrace, false},
		{"/api/v1/facets?field=customer_id&q=" + url.QueryEscape("error=true since=1h"), false},
		{"/api/services", true},
		{"/api/services/checkout/operations", true},
		{"/api/operations?service=checkout", true},
		{"/api/traces?service=checkout&lookback=1h", true},
		{"/api/traces/" + slowTrace, true},
		{"/api/dependencies?lookback=3600000", true},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			start := time.Now()
			resp, body := fetch(t, srv.URL+tt.path)
			elapsed := time.Since(start)
			if resp.StatusCode != http.StatusServiceUnavailable {
				t.Fatalf("status %d, want 503; body %s", resp.StatusCode, body)
			}
			if elapsed < budget || elapsed > budget+2*time.Second {
				t.Errorf("answered after %s, want just after the %s budget", elapsed, budget)
			}
			if got := resp.Header.Get("Retry-After"); got != "1" {
				t.Errorf("Retry-After %q, want 1", got)
			}
			var msg string
			if tt.jaeger {
				var e jaegerResponse
				if err := json.Unmarshal(body, &e); err != nil || len(e.Errors) != 1 || e.Errors[0].Code != http.StatusServiceUnavailable {
					t.Fatalf("body %s: %v", body, err)
				}
				msg = e.Errors[0].Message
			} else {
				var e ErrorResponse
				if err := json.Unmarshal(body, &e); err != nil {
					t.Fatalf("body %s: %v", body, err)
				}
				msg = e.Error
			}
			if !strings.Contains(msg, "exceeded its time budget of 200ms") {
				t.Errorf("message %q, want it to say the query exceeded its time budget", msg)
			}
			// The one blocked store call saw its context end by the deadline, and no call followed it.
			select {
			case err := <-st.calls:
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("store saw %v, want context.DeadlineExceeded", err)
				}
			default:
				t.Fatal("the store call did not return")
			}
			if n := len(st.calls); n != 0 {
				t.Errorf("%d more store calls after the budget ran out", n)
			}
		})
	}
}

// TestClientGoneCancels checks that a client leaving cancels the store work long before the budget.
func TestClientGoneCancels(t *testing.T) {
	st := &blockingStore{calls: make(chan error, 1)}
	srv := httptest.NewServer(New(st, Config{QueryTimeout: time.Hour}))
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/api/v1/search?q=a=1", nil)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("status %d, want the client to give up", resp.StatusCode)
	}
	select {
	case err := <-st.calls:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("store saw %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("store work still running 5s after the client left")
	}
}

func TestConfigDefaults(t *testing.T) {
	tests := []struct {
		cfg  Config
		want time.Duration
	}{
		{Config{}, DefaultQueryTimeout},
		{Config{QueryTimeout: -time.Second}, DefaultQueryTimeout},
		{Config{QueryTimeout: 3 * time.Second}, 3 * time.Second},
	}
	for _, tt := range tests {
		if got := New(nil, tt.cfg).timeout; got != tt.want {
			t.Errorf("New(%+v): timeout %s, want %s", tt.cfg, got, tt.want)
		}
	}
}

func fetch(t *testing.T, u string) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func TestJaegerLimitWithinMaxLimit(t *testing.T) {
	tests := []struct {
		limit string
		want  int
	}{
		{"", DefaultJaegerLimit},
		{"7", 7},
		{"1000", store.MaxLimit},
		{"5000", store.MaxLimit},
		{"2147483647", store.MaxLimit}, // past int32 is refused, as jaeger-query does (TestJaegerQuery)
	}
	for _, tt := range tests {
		params := map[string][]string{"service": {"checkout"}}
		if tt.limit != "" {
			params["limit"] = []string{tt.limit}
		}
		_, limit, err := JaegerQuery(params, now)
		if err != nil || limit != tt.want {
			t.Errorf("limit=%s: %d, %v; want %d", tt.limit, limit, err, tt.want)
		}
	}
}
