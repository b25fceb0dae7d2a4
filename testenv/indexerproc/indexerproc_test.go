package indexerproc

import (
	"os"
	"testing"
)

func TestProcStats(t *testing.T) {
	pid := os.Getpid()
	if _, err := CPUTime(pid); err != nil {
		t.Fatal(err)
	}
	if rss, err := PeakRSS(pid); err != nil || rss < 1<<20 {
		t.Fatalf("peak RSS %d, %v", rss, err)
	}
}

func TestServingLine(t *testing.T) {
	good := `{"time":"2026-01-01T00:00:00Z","level":"INFO","msg":"indexer serving","otlp_http":"127.0.0.1:4318","otlp_grpc":"127.0.0.1:4317","api":"127.0.0.1:8080"}`
	if otlp, api, ok := servingLine([]byte(good)); !ok || otlp != "127.0.0.1:4318" || api != "127.0.0.1:8080" {
		t.Errorf("servingLine(good) = %q, %q, %v", otlp, api, ok)
	}
	for _, bad := range []string{
		`{"msg":"indexer serving","otlp_http":"10.0.0.1:4318","api":"127.0.0.1:8080"}`,
		`{"msg":"indexer serving","otlp_http":"[::]:4318","api":"127.0.0.1:8080"}`,
		`{"msg":"opening embedded store","otlp_http":"127.0.0.1:4318","api":"127.0.0.1:8080"}`,
		`indexer serving`,
	} {
		if _, _, ok := servingLine([]byte(bad)); ok {
			t.Errorf("servingLine accepted %s", bad)
		}
	}
}
