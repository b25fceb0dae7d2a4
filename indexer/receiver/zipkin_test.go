package receiver

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/meshtrace/meshtrace/indexer/wal"
)

const zipkinSpan = `[{"traceId":"0af7651916cd43dd8448eb211c80319c","id":"b7ad6b7169203331","name":"GET /","kind":"SERVER",
 "timestamp":1700000000000000,"duration":1500,"localEndpoint":{"serviceName":"frontend"},"tags":{"component":"proxy","http.method":"GET"}}]`

// TestZipkinAnswers checks POST /api/v2/spans: a Zipkin v2 list is logged as an OTLP record and answered
// 202; refusals take the status refusalOf gives OTLP/HTTP, with the reason in plain text.
func TestZipkinAnswers(t *testing.T) {
	tests := []struct {
		name, method, contentType, body string
		log                             *recorder
		wantCode                        int
		wantMsg                         string
		wantRecords                     int
	}{
		{"span list", "", "application/json", zipkinSpan, nil, 202, "", 1},
		{"empty list", "", "application/json", `[]`, nil, 202, "", 0},
		{"not a list", "", "application/json", `{"traceId":"1"}`, nil, 400, "not a Zipkin v2 JSON span list", 0},
		{"protobuf", "", "application/x-protobuf", zipkinSpan, nil, 415, "use application/json", 0},
		{"GET", http.MethodGet, "application/json", "", nil, 405, "only POST", 0},
		{"too large", "", "application/json", `[` + strings.Repeat(" ", 2048) + `]`, nil, 413, "exceeds 1024 bytes", 0},
		{"log full", "", "application/json", zipkinSpan, &recorder{refuse: 1}, 429, "ingest backlog full", 0},
		{"stopping", "", "application/json", zipkinSpan, &recorder{err: wal.ErrClosed}, 503, "shutting down", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := tt.log
			if rec == nil {
				rec = &recorder{}
			}
			srv := newReceiver(t, rec, Config{MaxBodyBytes: 1024}).HTTPServer()
			method := tt.method
			if method == "" {
				method = http.MethodPost
			}
			req := httptest.NewRequest(method, ZipkinPath, strings.NewReader(tt.body))
			req.Header.Set("Content-Type", tt.contentType)
			w := httptest.NewRecorder()
			srv.Handler.ServeHTTP(w, req)
			if w.Code != tt.wantCode || !strings.Contains(w.Body.String(), tt.wantMsg) {
				t.Fatalf("status %d %q, want %d with %q", w.Code, w.Body, tt.wantCode, tt.wantMsg)
			}
			if len(rec.records) != tt.wantRecords {
				t.Fatalf("%d records logged, want %d", len(rec.records), tt.wantRecords)
			}
			if tt.wantRecords == 1 {
				var otlp coltracepb.ExportTraceServiceRequest
				if err := proto.Unmarshal(rec.records[0], &otlp); err != nil {
					t.Fatalf("the record is not OTLP: %v", err)
				}
				if s := otlp.ResourceSpans[0].ScopeSpans[0].Spans[0]; s.Name != "GET /" || !bytes.Equal(s.SpanId, []byte{0xb7, 0xad, 0x6b, 0x71, 0x69, 0x20, 0x33, 0x31}) {
					t.Errorf("logged span %v", s)
				}
			}
		})
	}
}
