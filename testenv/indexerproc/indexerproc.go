// Package indexerproc runs `indexer serve` as a child process for tests and benchmarks: on loopback ports
// chosen by the kernel (read back from its "indexer serving" log line), with its log in a file, and reads its
// CPU time and peak RSS from /proc.
package indexerproc

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat (100 on every Linux architecture
// Go supports).
const clockTicks = 100

// CPUTime returns the user plus system CPU time the process has used, from /proc/<pid>/stat.
func CPUTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is parenthesised and may hold spaces; fields from 3 on follow the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f)+2)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64) // field 14
	stime, err2 := strconv.ParseInt(f[12], 10, 64) // field 15
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return time.Duration(utime+stime) * time.Second / clockTicks, nil
}

// PeakRSS returns the process's peak resident set size in bytes (VmHWM in /proc/<pid>/status).
func PeakRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			f := strings.Fields(rest)
			if len(f) != 2 || f[1] != "kB" {
				return 0, fmt.Errorf("/proc/%d/status: VmHWM:%s", pid, strings.TrimSpace(rest))
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmHWM", pid)
}

// Process is a running `indexer serve` child process.
type Process struct {
	OTLPURL string // http://127.0.0.1:PORT/v1/traces
	APIURL  string // http://127.0.0.1:PORT
	LogPath string

	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
}

// Start runs `bin serve` on loopback ports chosen by the kernel with its log appended to dir/indexer.log, and
// returns once it listens. args are added to the command line. The process dies with its parent.
func Start(ctx context.Context, bin, dir string, args []string, timeout time.Duration) (*Process, error) {
	logPath := filepath.Join(dir, "indexer.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	argv := append([]string{"serve",
		"--otlp-http-addr", "127.0.0.1:0",
		"--otlp-grpc-addr", "127.0.0.1:0",
		"--api-addr", "127.0.0.1:0",
		"--log-format", "json",
	}, args...)
	cmd := exec.Command(bin, argv...)
	cmd.Dir = dir
	cmd.Env = indexerEnv()
	cmd.Stdout = logFile
	stderr, err := cmd.StderrPipe()
	if err != nil {
		logFile.Close()
		return nil, err
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the benchmark
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	ix := &Process{cmd: cmd, LogPath: logPath, done: make(chan struct{})}
	ready := make(chan struct{})
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		defer logFile.Close()
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		seen := false
		for sc.Scan() {
			line := sc.Bytes()
			_, _ = logFile.Write(append(line, '\n'))
			if !seen {
				if otlp, api, ok := servingLine(line); ok {
					seen = true
					ix.OTLPURL, ix.APIURL = "http://"+otlp+"/v1/traces", "http://"+api
					close(ready)
				}
			}
		}
		_, _ = io.Copy(logFile, stderr)
	}()
	go func() {
		<-copied // Wait closes the pipe: read it to the end first
		ix.waitErr = cmd.Wait()
		close(ix.done)
	}()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	select {
	case <-ready:
		return ix, nil
	case <-ix.done:
		return nil, fmt.Errorf("indexer exited during startup: %v\n--- %s (tail) ---\n%s", ix.waitErr, logPath, Tail(logPath, 20))
	case <-ctx.Done():
		ix.Stop(5 * time.Second)
		return nil, fmt.Errorf("indexer not listening after %v: %w\n--- %s (tail) ---\n%s", timeout, ctx.Err(), logPath, Tail(logPath, 20))
	}
}

// servingLine parses the JSON log line `indexer serve` writes once every listener is bound.
func servingLine(line []byte) (otlpHTTP, api string, ok bool) {
	if !bytes.Contains(line, []byte(`"indexer serving"`)) {
		return "", "", false
	}
	var l struct {
		Msg      string `json:"msg"`
		OTLPHTTP string `json:"otlp_http"`
		API      string `json:"api"`
	}
	if json.Unmarshal(line, &l) != nil || l.Msg != "indexer serving" || !loopback(l.OTLPHTTP) || !loopback(l.API) {
		return "", "", false
	}
	return l.OTLPHTTP, l.API, true
}

// loopback reports whether addr is 127.0.0.1:PORT: the benchmark sends traffic nowhere else.
func loopback(addr string) bool {
	host, port, err := net.SplitHostPort(addr)
	return err == nil && host == "127.0.0.1" && port != "" && port != "0"
}

// indexerEnv is the environment without MESHTRACE_* variables, which `indexer serve` would read as flags.
func indexerEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MESHTRACE_") {
			env = append(env, kv)
		}
	}
	return env
}

// PID is the process id.
func (ix *Process) PID() int { return ix.cmd.Process.Pid }

// Kill kills the process with SIGKILL (a crash) and waits for it to exit.
func (ix *Process) Kill() {
	_ = ix.cmd.Process.Kill()
	<-ix.done
}

// Stop sends SIGTERM (the indexer writes what it can and exits) and kills the process after timeout. It
// returns the exit error: nil for a clean exit.
func (ix *Process) Stop(timeout time.Duration) error {
	select {
	case <-ix.done:
		return ix.waitErr
	default:
	}
	_ = ix.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-ix.done:
		return ix.waitErr
	case <-time.After(timeout):
		_ = ix.cmd.Process.Kill()
		<-ix.done
		return fmt.Errorf("indexer ignored SIGTERM for %v; killed", timeout)
	}
}

// Tail returns the last n lines of a file.
func Tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Build compiles the indexer command into a temporary directory of t and returns the binary's path.
func Build(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "indexer")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/meshtrace/meshtrace/indexer/cmd/indexer").CombinedOutput()
	if err != nil {
		t.Fatalf("go build indexer: %v\n%s", err, out)
	}
	return bin
}
