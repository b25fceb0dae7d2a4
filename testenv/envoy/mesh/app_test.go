package mesh

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestAppPropagatesTraceHeaders chains two apps directly (no sidecar in between) and checks the first
// forwards the trace headers (and nothing else of the request) and relays the next service's status.
func TestAppPropagatesTraceHeaders(t *testing.T) {
	last, err := newApp("service-b")
	if err != nil {
		t.Fatal(err)
	}
	first, err := newApp("service-a")
	if err != nil {
		t.Fatal(err)
	}
	first.next, first.nextSv = last.Addr(), "service-b"
	last.serve()
	first.serve()
	defer first.close()
	defer last.close()

	req, _ := http.NewRequest(http.MethodGet, "http://"+first.Addr()+"/checkout?status=503", nil)
	req.Header.Set("Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	req.Header.Set("Baggage", "customer_id=123")
	req.Header.Set("X-Customer-Id", "cust-123")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || strings.TrimSpace(string(body)) != "service-a > service-b" {
		t.Errorf("answer %d %q, want 503 from service-b through service-a", resp.StatusCode, body)
	}

	seen := last.Seen()
	if len(seen) != 1 {
		t.Fatalf("service-b saw %d requests, want 1", len(seen))
	}
	h := seen[0]
	if h.Get("Traceparent") != req.Header.Get("Traceparent") || h.Get("Baggage") != "customer_id=123" {
		t.Errorf("service-b got traceparent %q baggage %q", h.Get("Traceparent"), h.Get("Baggage"))
	}
	if h.Get("X-Customer-Id") != "" {
		t.Error("service-a forwarded x-customer-id, which instrumented apps do not propagate")
	}
	if len(first.Seen()) != 1 {
		t.Errorf("service-a saw %d requests, want 1", len(first.Seen()))
	}
}

func TestAppRemembersBoundedHistory(t *testing.T) {
	a, err := newApp("service-a")
	if err != nil {
		t.Fatal(err)
	}
	a.serve()
	defer a.close()
	client := &http.Client{}
	for i := range maxSeen + 10 {
		resp, err := client.Get("http://" + a.Addr() + "/")
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		resp.Body.Close()
	}
	if n := len(a.Seen()); n != maxSeen {
		t.Errorf("remembered %d requests, want %d", n, maxSeen)
	}
}
