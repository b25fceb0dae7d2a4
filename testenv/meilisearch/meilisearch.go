// Package meilisearch runs real Meilisearch server processes for tests and benchmarks: one process per Start,
// on a free loopback port, with its own database directory and a random master key, bounded to a few
// indexing threads and a fixed indexing memory so that several fit on a small machine. Start waits until
// GET /health answers; Stop ends the process (SIGTERM, then SIGKILL after a bound) and removes what Start
// created. Kill, Freeze, Thaw and Restart are for outage tests: a killed server refuses connections, a frozen
// one (SIGSTOP) accepts them but never answers, as a hung server does, and a restarted one comes back on the
// same address with the same key and database, as a crashed server brought up again does.
//
// The binary is the pinned Meilisearch `make tools` installs (see Binary). A test that needs it and cannot
// find it fails, naming the fix; it is never skipped.
package meilisearch

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/testenv/artifact"
)

// Version is the Meilisearch version `make tools` installs.
const Version = "1.50.0"

// Environment variables naming the binary, in the order Binary reads them: MEILI_BIN (set by hand) wins over
// MESHTRACE_MEILI_BIN (exported by the Makefile).
const (
	EnvVar     = "MEILI_BIN"
	ToolEnvVar = "MESHTRACE_MEILI_BIN"
)

// LogFile is the name of the server's log (stdout and stderr) in Server.Dir.
const LogFile = "meilisearch.log"

// Binary returns the Meilisearch executable: $MEILI_BIN, else $MESHTRACE_MEILI_BIN, else
// .tools/meilisearch-<Version>/meilisearch under the module root, where `make tools` installs it. It fails,
// naming the fix, when the chosen file does not exist.
func Binary() (string, error) {
	for _, env := range []string{EnvVar, ToolEnvVar} {
		if p := os.Getenv(env); p != "" {
			if _, err := os.Stat(p); err != nil {
				return "", fmt.Errorf("meilisearch: %s=%s: %w (run `make tools`)", env, p, err)
			}
			return p, nil
		}
	}
	root, err := artifact.ModuleRoot()
	if err != nil {
		return "", fmt.Errorf("meilisearch: %w (set %s or run `make tools`)", err, EnvVar)
	}
	p := filepath.Join(root, ".tools", "meilisearch-"+Version, "meilisearch")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("meilisearch: no Meilisearch binary: %s and %s are unset and %s does not exist: run `make tools`",
			EnvVar, ToolEnvVar, p)
	}
	return p, nil
}

// Config configures one server. The zero value is ready to use.
type Config struct {
	// Binary is the Meilisearch executable; empty means Binary().
	Binary string
	// Dir holds the database, dumps and the log (LogFile). Empty: a new temporary directory that Stop and
	// Kill remove.
	Dir string
	// MaxIndexingThreads is --max-indexing-threads (default 1).
	MaxIndexingThreads int
	// MaxIndexingMemory is --max-indexing-memory, e.g. "512 MiB" (default "256 MiB").
	MaxIndexingMemory string
	// PayloadSizeLimit is --http-payload-size-limit, e.g. "1 MiB" (default: Meilisearch's, 100 MB).
	PayloadSizeLimit string
	// LogLevel is --log-level (default "WARN").
	LogLevel string
	// Args are extra command-line arguments.
	Args []string
	// StartTimeout bounds the wait for GET /health (default 60s).
	StartTimeout time.Duration
	// StopTimeout bounds the wait after SIGTERM before Stop kills the process (default 10s).
	StopTimeout time.Duration
}

// Server is a running Meilisearch process.
type Server struct {
	// URL is the base URL, http://127.0.0.1:PORT.
	URL string
	// Key is the master key (64 hex digits: 32 random bytes).
	Key string
	// PID is the process id.
	PID int
	// Dir holds the database and the log.
	Dir string

	cfg     Config
	tempDir bool
	stopped sync.Once
	stopRan atomic.Bool // Stop has been called

	mu sync.Mutex // guards p, swapped by Restart
	p  *proc
}

// proc is one run of the server process.
type proc struct {
	cmd     *exec.Cmd
	done    chan struct{} // closed when the process has exited
	waitErr error         // valid after done is closed
}

// proc returns the current process.
func (s *Server) proc() *proc {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.p
}

// Start starts a server and waits until it is healthy. If the process exits or does not become healthy in
// time, Start returns an error that includes the tail of its log.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.Binary == "" {
		bin, err := Binary()
		if err != nil {
			return nil, err
		}
		cfg.Binary = bin
	}
	if cfg.MaxIndexingThreads <= 0 {
		cfg.MaxIndexingThreads = 1
	}
	if cfg.MaxIndexingMemory == "" {
		cfg.MaxIndexingMemory = "256 MiB"
	}
	if cfg.LogLevel == "" {
		cfg.LogLevel = "WARN"
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = 60 * time.Second
	}
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = 10 * time.Second
	}
	tempDir := cfg.Dir == ""
	if tempDir {
		d, err := os.MkdirTemp("", "meilisearch-")
		if err != nil {
			return nil, err
		}
		cfg.Dir = d
	}
	var key [32]byte
	if _, err := rand.Read(key[:]); err != nil {
		return nil, err
	}
	// The port is chosen by binding :0 and closing; another process may take it before Meilisearch binds
	// it, so a start that fails that way is retried on a new port.
	var lastErr error
	for range 3 {
		s, err := start(ctx, cfg, hex.EncodeToString(key[:]), "")
		if err == nil {
			s.tempDir = tempDir
			return s, nil
		}
		lastErr = err
		if !errors.Is(err, errAddrInUse) {
			break
		}
	}
	if tempDir {
		_ = os.RemoveAll(cfg.Dir)
	}
	return nil, lastErr
}

var errAddrInUse = errors.New("address in use")

// start starts a server on addr (host:port; empty: a free loopback port) and waits until it is healthy.
func start(ctx context.Context, cfg Config, key, addr string) (*Server, error) {
	if addr == "" {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	}
	s := &Server{URL: "http://" + addr, Key: key, Dir: cfg.Dir, cfg: cfg}
	if err := s.run(ctx, addr, false); err != nil {
		return nil, err
	}
	return s, nil
}

// run starts the process on addr, sets s.p and s.PID, and waits until it is healthy; if it does not become
// healthy, the process is killed and the error includes the tail of its log. A restart appends to the log,
// so it still holds what the previous process wrote.
func (s *Server) run(ctx context.Context, addr string, appendLog bool) error {
	cfg, key := s.cfg, s.Key
	logPath := filepath.Join(cfg.Dir, LogFile)
	flags := os.O_CREATE | os.O_WRONLY | os.O_TRUNC
	if appendLog {
		flags = os.O_CREATE | os.O_WRONLY | os.O_APPEND
	}
	logFile, err := os.OpenFile(logPath, flags, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close() // the child holds its own descriptor
	args := []string{
		"--db-path", filepath.Join(cfg.Dir, "data.ms"),
		"--dump-dir", filepath.Join(cfg.Dir, "dumps"),
		"--snapshot-dir", filepath.Join(cfg.Dir, "snapshots"),
		"--http-addr", addr,
		"--master-key", key,
		"--no-analytics",
		"--env", "development",
		"--max-indexing-threads", strconv.Itoa(cfg.MaxIndexingThreads),
		"--max-indexing-memory", cfg.MaxIndexingMemory,
		"--log-level", cfg.LogLevel,
	}
	if cfg.PayloadSizeLimit != "" {
		args = append(args, "--http-payload-size-limit", cfg.PayloadSizeLimit)
	}
	args = append(args, cfg.Args...)
	cmd := exec.Command(cfg.Binary, args...)
	cmd.Dir = cfg.Dir // no config.toml or data.ms of the caller's working directory
	cmd.Env = childEnv()
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the caller
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("meilisearch: start %s: %w", cfg.Binary, err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	s.mu.Lock()
	s.p, s.PID = p, cmd.Process.Pid
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, cfg.StartTimeout)
	defer cancel()
	if err := s.waitHealthy(ctx, p); err != nil {
		s.kill()
		tail := s.LogTail(30)
		if strings.Contains(tail, "ddress already in use") {
			return fmt.Errorf("meilisearch: %s: %w", addr, errAddrInUse)
		}
		return fmt.Errorf("meilisearch: %w\n--- %s (tail) ---\n%s", err, logPath, tail)
	}
	return nil
}

// Restart ends the process with SIGKILL if it is still running (frozen or not), as a crash does, and starts
// a new one on the same address with the same key, Dir and database, waiting until it is healthy. The
// server keeps its URL and Key; PID changes. The log goes on in the same file. Restart fails after Stop, or
// if the address has been taken meanwhile. It must not run concurrently with the other methods.
func (s *Server) Restart(ctx context.Context) error {
	if s.stopRan.Load() {
		return errors.New("meilisearch: Restart after Stop")
	}
	s.kill()
	return s.run(ctx, strings.TrimPrefix(s.URL, "http://"), true)
}

// childEnv is the caller's environment without MEILI_* variables, which Meilisearch would read as options.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MEILI_") {
			env = append(env, kv)
		}
	}
	return env
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (s *Server) waitHealthy(ctx context.Context, p *proc) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if s.Healthy(ctx) {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("exited during startup: %v", p.waitErr)
		case <-ctx.Done():
			return fmt.Errorf("not healthy: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

// Healthy reports whether GET /health answers 200 within a second (or ctx).
func (s *Server) Healthy(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/health", nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// Exited reports whether the process has exited.
func (s *Server) Exited() bool {
	select {
	case <-s.proc().done:
		return true
	default:
		return false
	}
}

// Done is closed when the process has exited (the current process: Restart starts a new one, with a new
// channel).
func (s *Server) Done() <-chan struct{} { return s.proc().done }

// Freeze stops the process with SIGSTOP: connections are still accepted by the kernel but nothing answers.
// It returns once every thread of the process is stopped (SIGSTOP is delivered to each thread on its way
// back to user space, so a busy thread could otherwise still answer a request sent just after the signal).
func (s *Server) Freeze() error {
	if err := s.signal(syscall.SIGSTOP); err != nil {
		return err
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		stopped, err := s.allThreadsStopped()
		if err != nil || stopped {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("meilisearch: pid %d: threads still running 10s after SIGSTOP", s.PID)
		}
	}
}

// allThreadsStopped reports whether every thread of the process is in the stopped state, from
// /proc/PID/task/TID/stat.
func (s *Server) allThreadsStopped() (bool, error) {
	dir := fmt.Sprintf("/proc/%d/task", s.PID)
	tids, err := os.ReadDir(dir)
	if err != nil {
		return false, fmt.Errorf("meilisearch: %w", err)
	}
	for _, tid := range tids {
		b, err := os.ReadFile(filepath.Join(dir, tid.Name(), "stat"))
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue // the thread exited
			}
			return false, fmt.Errorf("meilisearch: %w", err)
		}
		// The state follows the command name, which is in parentheses and may itself hold ") ".
		i := bytes.LastIndexByte(b, ')')
		if i < 0 || i+2 >= len(b) {
			return false, fmt.Errorf("meilisearch: %s/%s/stat: unexpected %q", dir, tid.Name(), b)
		}
		if st := b[i+2]; st != 'T' && st != 't' {
			return false, nil
		}
	}
	return true, nil
}

// Thaw resumes a frozen process with SIGCONT.
func (s *Server) Thaw() error { return s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig syscall.Signal) error {
	if s.Exited() {
		return fmt.Errorf("meilisearch: pid %d has exited", s.PID)
	}
	return s.proc().cmd.Process.Signal(sig)
}

// Stop ends the process (SIGTERM, thawing it if frozen; SIGKILL after Config.StopTimeout), waits for it and
// removes the temporary directory Start created. It returns the error of a process that did not exit
// cleanly. Later calls, and calls after Kill, do nothing.
func (s *Server) Stop() error {
	var err error
	s.stopped.Do(func() {
		s.stopRan.Store(true)
		if p := s.proc(); !s.Exited() {
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			_ = p.cmd.Process.Signal(syscall.SIGCONT) // a frozen process handles SIGTERM only once resumed
			select {
			case <-p.done:
				if p.waitErr != nil && !terminated(p.waitErr) {
					err = fmt.Errorf("meilisearch: pid %d: %w", s.PID, p.waitErr)
				}
			case <-time.After(s.cfg.StopTimeout):
				s.kill()
				err = fmt.Errorf("meilisearch: pid %d ignored SIGTERM for %v; killed", s.PID, s.cfg.StopTimeout)
			}
		}
		s.cleanup()
	})
	return err
}

// Kill ends the process with SIGKILL at once (an abrupt crash, frozen or not) and waits for it. Unlike Stop
// it keeps Dir, so a test can read the log or Restart the server; Stop, called later, removes it.
func (s *Server) Kill() { s.kill() }

func (s *Server) kill() {
	p := s.proc()
	if !s.Exited() {
		_ = p.cmd.Process.Kill()
	}
	<-p.done
}

// terminated reports whether err is the exit of a process ended by SIGTERM.
func terminated(err error) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGTERM
}

func (s *Server) cleanup() {
	if s.tempDir {
		_ = os.RemoveAll(s.Dir)
	}
}

// LogTail returns the last n lines of the server's log.
func (s *Server) LogTail(n int) string {
	b, err := os.ReadFile(filepath.Join(s.Dir, LogFile))
	if err != nil {
		return err.Error()
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// StartTest starts a server for t (its directory is a t.TempDir unless cfg.Dir is set) and stops it when the
// test ends, logging the tail of its log if the test failed. A missing binary fails the test with the fix
// (`make tools`); it does not skip.
func StartTest(t testing.TB, cfg Config) *Server {
	t.Helper()
	if cfg.Binary == "" {
		bin, err := Binary()
		if err != nil {
			t.Fatalf("%v", err)
		}
		cfg.Binary = bin
	}
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	s, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("meilisearch pid %d at %s, %s (tail):\n%s", s.PID, s.URL, LogFile, s.LogTail(20))
		}
		if err := s.Stop(); err != nil {
			t.Logf("%v", err)
		}
	})
	return s
}
