package load

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestRunCountsEveryResponse(t *testing.T) {
	var served atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := served.Add(1)
		if r.Header.Get("X-Customer-Id") != "cust-1" || r.URL.Path != "/checkout" {
			http.Error(w, "wrong request", http.StatusBadRequest)
			return
		}
		switch {
		case n%3 == 0: // chunked body
			w.(http.Flusher).Flush()
			_, _ = io.WriteString(w, strings.Repeat("x", 100))
		case n%5 == 0:
			w.WriteHeader(http.StatusServiceUnavailable)
		default:
			_, _ = io.WriteString(w, "ok")
		}
	}))
	defer srv.Close()

	res, err := Run(context.Background(), srv.Listener.Addr().String(), Request{
		Path:   "/checkout",
		Header: http.Header{"X-Customer-Id": {"cust-1"}},
	}, 4, 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests == 0 || res.Errors != 0 {
		t.Fatalf("requests=%d errors=%d", res.Requests, res.Errors)
	}
	// The server may have answered a few requests whose responses the run's deadline cut off.
	if s := served.Load(); int64(res.Requests) > s || s > int64(res.Requests)+4 {
		t.Errorf("completed %d requests, server answered %d", res.Requests, s)
	}
	if res.Non2xx == 0 || res.Non2xx > res.Requests/4+1 {
		t.Errorf("non-2xx = %d of %d, want about 1 in 5 minus the chunked ones", res.Non2xx, res.Requests)
	}
	if len(res.Latencies) != res.Requests || res.Percentile(0.5) <= 0 || res.Percentile(0.99) < res.Percentile(0.5) {
		t.Errorf("latencies: n=%d p50=%v p99=%v", len(res.Latencies), res.Percentile(0.5), res.Percentile(0.99))
	}
}

func TestRunFailsWhenNothingAnswers(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	addr := srv.Listener.Addr().String()
	srv.Close()
	if _, err := Run(context.Background(), addr, Request{}, 2, 200*time.Millisecond); err == nil {
		t.Fatal("Run succeeded against a closed port")
	}
}

func TestPercentile(t *testing.T) {
	r := Result{}
	for i := 100; i >= 1; i-- {
		r.Latencies = append(r.Latencies, time.Duration(i))
	}
	for _, tt := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 50}, {0.99, 99}, {1, 100}, {0.001, 1}} {
		if got := r.Percentile(tt.q); got != tt.want {
			t.Errorf("Percentile(%v) = %v, want %v", tt.q, got, tt.want)
		}
	}
}
