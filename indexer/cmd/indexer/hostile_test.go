package main

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/meshtrace/meshtrace/testenv/indexerproc"
)

// memoryBudget is the peak RSS `indexer serve` must stay under with its defaults whatever it is sent (the
// Deployment's limit is 1 GiB).
const memoryBudget = 512 << 20

func hostileSpan(attrs ...*commonpb.KeyValue) *tracepb.Span {
	return &tracepb.Span{TraceId: bytes.Repeat([]byte{1}, 16), SpanId: bytes.Repeat([]byte{2}, 8), Name: "x",
		StartTimeUnixNano: 1, EndTimeUnixNano: 2, Attributes: attrs}
}

func hostileBody(t *testing.T, spans ...*tracepb.Span) []byte {
	t.Helper()
	b, err := proto.Marshal(&coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		ScopeSpans: []*tracepb.ScopeSpans{{Spans: spans}}}}})
	if err != nil {
		t.Fatal(err)
	}
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	zw.Write(b)
	zw.Close()
	return z.Bytes()
}

func post(t *testing.T, url string, body []byte) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("Content-Encoding", "gzip")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var msg bytes.Buffer
	msg.ReadFrom(resp.Body)
	return resp.StatusCode, msg.String()
}

// TestHostileInputs sends `indexer serve` (defaults, embedded store) each input that used to exhaust its
// memory or hold it, checks the answer, and asserts the process's peak RSS stayed under memoryBudget; then
// checks that a SIGTERM with slow clients still connected exits promptly and cleanly.
func TestHostileInputs(t *testing.T) {
	p := startProcess(t, indexerproc.Build(t), t.TempDir())
	url := p.OTLPURL
	str := func(k, v string) *commonpb.KeyValue {
		return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
	}
	bigValue := hostileBody(t, hostileSpan(str("k", strings.Repeat("a", 16_000_000))))
	many := make([]*tracepb.Span, 313_500)
	for i := range many {
		many[i] = hostileSpan()
	}
	tests := []struct {
		name     string
		body     []byte
		parallel int
		code     int
		msg      string
	}{
		{"16 MB string value, gzip", bigValue, 1, 400, "exceeds the limit of 65536 (MaxValueBytes)"},
		{"six of them at once", bigValue, 6, 400, "MaxValueBytes"},
		{"15 MB attribute key", hostileBody(t, hostileSpan(str(strings.Repeat("k", 15_000_000), "v"))), 1, 400, "exceeds the limit of 1024 (MaxKeyBytes)"},
		{"313,500 spans, gzip", hostileBody(t, many...), 1, 413, "313500 spans exceed the limit of 65536 (MaxSpans)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Logf("%d bytes on the wire", len(tt.body))
			var wg sync.WaitGroup
			var answered atomic.Int32
			for range tt.parallel {
				wg.Go(func() {
					code, msg := post(t, url, tt.body)
					if tt.parallel > 1 && code == http.StatusTooManyRequests && strings.Contains(msg, "budget") {
						return // six 16 MB bodies reserve more than the in-flight budget: some are told to retry
					}
					if code != tt.code || !strings.Contains(msg, tt.msg) {
						t.Errorf("answer %d %q, want %d with %q", code, msg, tt.code, tt.msg)
					}
					answered.Add(1)
				})
			}
			wg.Wait()
			if answered.Load() == 0 {
				t.Errorf("no request got past the budget to its answer")
			}
		})
	}

	// 200 connections send headers announcing the largest body and 1 KiB of it, then nothing.
	var conns []net.Conn
	for range 200 {
		c, err := net.Dial("tcp", strings.TrimSuffix(strings.TrimPrefix(p.OTLPURL, "http://"), "/v1/traces"))
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		fmt.Fprintf(c, "POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: 16000000\r\n\r\n%s", bytes.Repeat([]byte{0x0a}, 1024))
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	time.Sleep(500 * time.Millisecond)
	rss, err := indexerproc.PeakRSS(p.PID())
	if err != nil {
		t.Fatal(err)
	}
	if rss > memoryBudget {
		t.Fatalf("peak RSS %d MiB, budget %d MiB", rss>>20, memoryBudget>>20)
	} else {
		t.Logf("peak RSS after every hostile input: %d MiB (budget %d MiB)", rss>>20, memoryBudget>>20)
	}
	// The API still answers while they hang.
	get(t, p.APIURL+"/healthz")

	began := time.Now()
	err = p.Stop(time.Minute)
	if took := time.Since(began); err != nil || took > 15*time.Second {
		t.Fatalf("SIGTERM with 200 stalled uploads: exit %v after %v", err, took)
	} else {
		t.Logf("SIGTERM with 200 stalled uploads: clean exit after %v", took.Round(time.Millisecond))
	}
}
