package meilisearch

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// get answers the status of an authorised GET, or an error.
func get(t *testing.T, s *Server, path string, timeout time.Duration) (int, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+s.Key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

func TestStartServesWithMasterKey(t *testing.T) {
	s := StartTest(t, Config{})
	if !strings.HasPrefix(s.URL, "http://127.0.0.1:") {
		t.Errorf("URL %s is not on loopback", s.URL)
	}
	if len(s.Key) != 64 {
		t.Errorf("key %q: want 64 hex digits", s.Key)
	}
	if s.PID <= 0 || syscall.Kill(s.PID, 0) != nil {
		t.Errorf("pid %d is not running", s.PID)
	}
	if !s.Healthy(context.Background()) {
		t.Fatal("not healthy after Start")
	}
	if code, err := get(t, s, "/version", 5*time.Second); err != nil || code != http.StatusOK {
		t.Errorf("GET /version with the key: %d, %v", code, err)
	}
	resp, err := http.Get(s.URL + "/indexes")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET /indexes without a key: %d, want 401", resp.StatusCode)
	}
	if _, err := os.Stat(filepath.Join(s.Dir, "data.ms")); err != nil {
		t.Errorf("database not in Dir: %v", err)
	}
}

func TestServersAreIndependent(t *testing.T) {
	a, b := StartTest(t, Config{}), StartTest(t, Config{})
	if a.URL == b.URL || a.Key == b.Key || a.Dir == b.Dir {
		t.Errorf("two servers share URL, key or directory: %+v %+v", a, b)
	}
}

func TestFreezeThaw(t *testing.T) {
	s := StartTest(t, Config{})
	if err := s.Freeze(); err != nil {
		t.Fatal(err)
	}
	if code, err := get(t, s, "/health", 300*time.Millisecond); err == nil {
		t.Fatalf("frozen server answered %d", code)
	}
	if err := s.Thaw(); err != nil {
		t.Fatal(err)
	}
	if code, err := get(t, s, "/health", 5*time.Second); err != nil || code != http.StatusOK {
		t.Fatalf("thawed server: %d, %v", code, err)
	}
}

func TestStopWhileFrozen(t *testing.T) {
	s, err := Start(context.Background(), Config{StopTimeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	dir := s.Dir
	if err := s.Freeze(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("Stop of a frozen server took %v: it was killed, not terminated", d)
	}
	if !s.Exited() {
		t.Fatal("running after Stop")
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("temporary directory %s left behind: %v", dir, err)
	}
	if err := s.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

func TestKill(t *testing.T) {
	s := StartTest(t, Config{})
	s.Kill()
	if !s.Exited() {
		t.Fatal("running after Kill")
	}
	if _, err := get(t, s, "/health", time.Second); err == nil {
		t.Fatal("killed server answered")
	}
	if err := s.Freeze(); err == nil {
		t.Error("Freeze of an exited server succeeded")
	}
}

func TestBinaryFromEnvironment(t *testing.T) {
	t.Setenv(EnvVar, filepath.Join(t.TempDir(), "missing"))
	_, err := Binary()
	if err == nil || !strings.Contains(err.Error(), "make tools") {
		t.Fatalf("missing $%s: %v, want an error naming `make tools`", EnvVar, err)
	}
	bin := filepath.Join(t.TempDir(), "meilisearch")
	if err := os.WriteFile(bin, nil, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv(EnvVar, "")
	t.Setenv(ToolEnvVar, bin)
	if got, err := Binary(); err != nil || got != bin {
		t.Fatalf("Binary() = %q, %v; want $%s = %s", got, err, ToolEnvVar, bin)
	}
}

func TestStartReportsEarlyExit(t *testing.T) {
	bin, err := Binary()
	if err != nil {
		t.Fatal(err)
	}
	_, err = Start(context.Background(), Config{Binary: bin, Args: []string{"--no-such-flag"}})
	if err == nil || !strings.Contains(err.Error(), "no-such-flag") {
		t.Fatalf("Start with a bad flag: %v, want the log naming the flag", err)
	}
}

func TestRestartKeepsAddressKeyAndData(t *testing.T) {
	s := StartTest(t, Config{})
	url, key, pid := s.URL, s.Key, s.PID
	req, err := http.NewRequest(http.MethodPost, s.URL+"/indexes", strings.NewReader(`{"uid":"kept"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+s.Key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST /indexes: %d", resp.StatusCode)
	}
	// The index creation is a task: wait until the index exists before crashing the server.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if code, err := get(t, s, "/indexes/kept", time.Second); err == nil && code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("index kept never appeared")
		}
	}
	if err := s.Freeze(); err != nil { // Restart kills a frozen server too
		t.Fatal(err)
	}
	if err := s.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s.URL != url || s.Key != key || s.PID == pid || s.Exited() {
		t.Errorf("after Restart: URL %s (was %s), key changed %v, pid %d (was %d), exited %v",
			s.URL, url, s.Key != key, s.PID, pid, s.Exited())
	}
	if syscall.Kill(pid, 0) == nil {
		t.Errorf("old pid %d still running", pid)
	}
	if code, err := get(t, s, "/indexes/kept", 5*time.Second); err != nil || code != http.StatusOK {
		t.Errorf("GET /indexes/kept after Restart: %d, %v; want the index kept", code, err)
	}
	s.Kill()
	if _, err := get(t, s, "/health", time.Second); err == nil {
		t.Fatal("killed server answered")
	}
	if err := s.Restart(context.Background()); err != nil {
		t.Fatalf("Restart after Kill: %v", err)
	}
	if code, err := get(t, s, "/health", 5*time.Second); err != nil || code != http.StatusOK {
		t.Errorf("restarted server: %d, %v", code, err)
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if !s.Exited() {
		t.Error("running after Stop")
	}
	if err := s.Restart(context.Background()); err == nil {
		t.Error("Restart after Stop succeeded")
	}
}
