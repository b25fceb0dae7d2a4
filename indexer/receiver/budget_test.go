package receiver

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// slowRequest starts a POST whose body sends first and then waits for the returned writer to be closed.
func slowRequest(t *testing.T, h http.Handler, contentLength int64, first []byte) (*io.PipeWriter, chan *httptest.ResponseRecorder) {
	t.Helper()
	pr, pw := io.Pipe()
	req := httptest.NewRequest(http.MethodPost, TracesPath, pr)
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.ContentLength = contentLength
	done := make(chan *httptest.ResponseRecorder, 1)
	go func() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		done <- w
	}()
	if _, err := pw.Write(first); err != nil {
		t.Fatal(err)
	}
	return pw, done
}

// TestInflightBudget holds requests that have sent part of their body: they hold budget only for what they
// sent (never their Content-Length), a request that finds the budget used up is answered 429 at once, and the
// budget comes back when they end.
func TestInflightBudget(t *testing.T) {
	const body = 64 << 10
	r := newReceiver(t, &recorder{}, Config{MaxBodyBytes: body, MaxInflightBytes: 4 * body})

	// A client announcing the largest body and sending 10 bytes holds one read chunk, not the body.
	pw, done := slowRequest(t, r, body, []byte("0123456789"))
	time.Sleep(20 * time.Millisecond)
	if !r.budget.TryAcquire(4*body - readChunk) {
		t.Fatal("a request that sent 10 bytes holds more than one read chunk of the budget")
	}
	r.budget.Release(4*body - readChunk)
	pw.CloseWithError(io.ErrUnexpectedEOF)
	<-done

	// Requests that each sent 60 KiB use the budget up between them.
	var writers []*io.PipeWriter
	var answers []chan *httptest.ResponseRecorder
	for range 2 {
		pw, done := slowRequest(t, r, -1, bytes.Repeat([]byte{0}, 60<<10))
		writers, answers = append(writers, pw), append(answers, done)
	}
	time.Sleep(20 * time.Millisecond)
	req := httptest.NewRequest(http.MethodPost, TracesPath, bytes.NewReader(bytes.Repeat([]byte{0}, 40<<10)))
	req.Header.Set("Content-Type", "application/x-protobuf")
	w := httptest.NewRecorder()
	began := time.Now()
	r.ServeHTTP(w, req)
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != "1" || !strings.Contains(w.Body.String(), "budget") {
		t.Fatalf("request past the budget: %d %q %q", w.Code, w.Header().Get("Retry-After"), w.Body)
	}
	if d := time.Since(began); d > time.Second {
		t.Fatalf("refusal took %v: it must not wait for the budget", d)
	}
	for _, pw := range writers {
		pw.CloseWithError(io.ErrUnexpectedEOF)
	}
	for _, done := range answers {
		<-done
	}
	if !r.budget.TryAcquire(4 * body) {
		t.Fatal("budget not returned after the requests ended")
	}
}

// TestJSONTooLargeForBudget refuses a JSON body whose decoding could never fit the budget with 413.
func TestJSONTooLargeForBudget(t *testing.T) {
	r := newReceiver(t, &recorder{}, Config{MaxBodyBytes: 1 << 20, MaxInflightBytes: 8 << 20})
	req := httptest.NewRequest(http.MethodPost, TracesPath, strings.NewReader(`{"resourceSpans":[]}`+strings.Repeat(" ", 512<<10)))
	req.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	r.ServeHTTP(w, req)
	if w.Code != http.StatusRequestEntityTooLarge || !strings.Contains(w.Body.String(), "send smaller requests or protobuf") {
		t.Fatalf("got %d %s", w.Code, w.Body)
	}
}
