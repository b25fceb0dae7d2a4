// Package envoy runs real Envoy processes for tests and benchmarks: it renders a bootstrap (see Bootstrap),
// starts Envoy on loopback with every port chosen by the kernel, waits until the admin endpoint reports the
// server live, and exposes what tests assert on: listener addresses, /stats counters, the log and the
// process's resident memory. Close stops the process (SIGTERM, then SIGKILL after a bound).
//
// The Envoy binary is the pinned one `make tools` installs (see Binary).
package envoy

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// LogFile is the name of Envoy's log (stdout and stderr) in Options.Dir.
const LogFile = "envoy.log"

// Options configure one Envoy process.
type Options struct {
	// Binary is the Envoy executable; empty means Binary().
	Binary string
	// Dir receives the bootstrap file, the admin address file and the log (LogFile); it must exist.
	Dir string
	// Concurrency is the number of worker threads (default 1).
	Concurrency int
	// LogLevel is Envoy's log level (default "warning").
	LogLevel string
	// ComponentLogLevel sets levels per logger, as in --component-log-level (default "wasm:info", so the
	// log holds the plugins' lines at info and above).
	ComponentLogLevel string
	// StartTimeout bounds the wait for the server to become live (default 5m: V8 compiles a Go-built
	// plugin of several MB in about 2s on an idle core, but in minutes on a machine many times oversubscribed).
	StartTimeout time.Duration
}

// Process is a running Envoy.
type Process struct {
	cmd     *exec.Cmd
	admin   string // http://host:port
	logPath string
	client  *http.Client
	done    chan struct{} // closed when the process has exited
	waitErr error         // valid after done is closed

	workerOnce sync.Once // finds workerStat, the worker thread's /proc stat file, on the first WorkerCPU
	workerStat string
	workerErr  error
}

// Start renders b into opts.Dir, starts Envoy and waits until it is live. If Envoy exits or does not become
// live in time, Start returns an error that includes the tail of Envoy's log.
func Start(ctx context.Context, b Bootstrap, opts Options) (*Process, error) {
	if opts.Dir == "" {
		return nil, errors.New("envoy: Options.Dir is required")
	}
	if opts.Binary == "" {
		bin, err := Binary()
		if err != nil {
			return nil, err
		}
		opts.Binary = bin
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 1
	}
	if opts.LogLevel == "" {
		opts.LogLevel = "warning"
	}
	if opts.ComponentLogLevel == "" {
		opts.ComponentLogLevel = "wasm:info"
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = 5 * time.Minute
	}

	yaml, err := b.Render()
	if err != nil {
		return nil, err
	}
	config := filepath.Join(opts.Dir, "envoy.yaml")
	adminFile := filepath.Join(opts.Dir, "admin-address")
	logPath := filepath.Join(opts.Dir, LogFile)
	if err := os.WriteFile(config, yaml, 0o644); err != nil {
		return nil, err
	}
	_ = os.Remove(adminFile)
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close() // the child holds its own descriptor

	cmd := exec.Command(opts.Binary,
		"--config-path", config,
		"--admin-address-path", adminFile,
		"--disable-hot-restart", // no shared memory: many Envoys may run side by side
		"--concurrency", strconv.Itoa(opts.Concurrency),
		"--log-level", opts.LogLevel,
		"--component-log-level", opts.ComponentLogLevel,
	)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the test binary
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("envoy: start %s: %w", opts.Binary, err)
	}
	p := &Process{
		cmd:     cmd,
		logPath: logPath,
		client:  &http.Client{Timeout: 10 * time.Second},
		done:    make(chan struct{}),
	}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()

	ctx, cancel := context.WithTimeout(ctx, opts.StartTimeout)
	defer cancel()
	if err := p.waitLive(ctx, adminFile); err != nil {
		_ = p.Close()
		return nil, fmt.Errorf("envoy: %w\n--- envoy.log (tail) ---\n%s", err, p.LogTail(40))
	}
	return p, nil
}

// waitLive polls for the admin address file, then for GET /ready to answer 200.
func (p *Process) waitLive(ctx context.Context, adminFile string) error {
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-p.done:
			return fmt.Errorf("exited during startup: %v", p.waitErr)
		case <-ctx.Done():
			return fmt.Errorf("not live: %w", ctx.Err())
		case <-tick.C:
		}
		if p.admin == "" {
			b, err := os.ReadFile(adminFile)
			if err != nil || len(strings.TrimSpace(string(b))) == 0 {
				continue
			}
			p.admin = "http://" + strings.TrimSpace(string(b))
		}
		if code, _, err := p.adminGet(ctx, "/ready"); err == nil && code == http.StatusOK {
			return nil
		}
	}
}

// AdminURL is the base URL of the admin endpoint, e.g. http://127.0.0.1:41234.
func (p *Process) AdminURL() string { return p.admin }

// PID is the process id.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Exited reports whether the process has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// ListenerAddr returns the bound host:port of the named listener.
func (p *Process) ListenerAddr(ctx context.Context, name string) (string, error) {
	code, body, err := p.adminGet(ctx, "/listeners?format=json")
	if err != nil {
		return "", err
	}
	if code != http.StatusOK {
		return "", fmt.Errorf("envoy: /listeners: status %d", code)
	}
	addrs, err := ParseListeners(body)
	if err != nil {
		return "", err
	}
	if a, ok := addrs[name]; ok {
		return a, nil
	}
	return "", fmt.Errorf("envoy: no listener %q", name)
}

// ParseListeners reads the answer of Envoy's admin /listeners?format=json: the bound host:port of each
// listener, by name.
func ParseListeners(body []byte) (map[string]string, error) {
	var resp struct {
		ListenerStatuses []struct {
			Name         string `json:"name"`
			LocalAddress struct {
				SocketAddress struct {
					Address   string `json:"address"`
					PortValue int    `json:"port_value"`
				} `json:"socket_address"`
			} `json:"local_address"`
		} `json:"listener_statuses"`
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		return nil, fmt.Errorf("envoy: /listeners: %w", err)
	}
	out := make(map[string]string, len(resp.ListenerStatuses))
	for _, l := range resp.ListenerStatuses {
		sa := l.LocalAddress.SocketAddress
		out[l.Name] = net.JoinHostPort(sa.Address, strconv.Itoa(sa.PortValue))
	}
	return out, nil
}

// Stats returns the counters and gauges whose names match the regular expression filter (Envoy's /stats
// filter syntax; empty matches all). Histograms are left out.
func (p *Process) Stats(ctx context.Context, filter string) (map[string]int64, error) {
	path := "/stats"
	if filter != "" {
		path += "?filter=" + url.QueryEscape(filter)
	}
	code, body, err := p.adminGet(ctx, path)
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("envoy: /stats: status %d: %s", code, body)
	}
	return parseStats(string(body)), nil
}

// parseStats reads the text form of /stats ("name: value" per line), keeping integer values only.
func parseStats(text string) map[string]int64 {
	stats := make(map[string]int64)
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), ": ")
		if !ok {
			continue
		}
		if v, err := strconv.ParseInt(value, 10, 64); err == nil {
			stats[name] = v
		}
	}
	return stats
}

// RSS returns the resident set size of the Envoy process in bytes (Linux).
func (p *Process) RSS() (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.PID()))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("envoy: VmRSS %q: %w", rest, err)
			}
			return kb * 1024, nil
		}
	}
	return 0, errors.New("envoy: no VmRSS in /proc status")
}

// Log returns Envoy's log so far.
func (p *Process) Log() string {
	b, _ := os.ReadFile(p.logPath)
	return string(b)
}

// LogTail returns the last n lines of Envoy's log.
func (p *Process) LogTail(n int) string {
	lines := strings.Split(strings.TrimRight(p.Log(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// WaitLog waits until Envoy's log contains substr, polling until ctx is done or the process exits.
func (p *Process) WaitLog(ctx context.Context, substr string) error {
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for {
		if strings.Contains(p.Log(), substr) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("envoy: log has no %q: %w", substr, ctx.Err())
		case <-p.done:
			if strings.Contains(p.Log(), substr) {
				return nil
			}
			return fmt.Errorf("envoy: exited without logging %q", substr)
		case <-tick.C:
		}
	}
}

// Close stops Envoy: SIGTERM, then SIGKILL if it has not exited after 10 seconds. It is safe to call twice.
func (p *Process) Close() error {
	if p.Exited() {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(10 * time.Second):
	}
	_ = p.cmd.Process.Kill()
	<-p.done
	return errors.New("envoy: did not stop on SIGTERM within 10s; killed")
}

// Wait waits until the process exits or ctx is done and returns its exit error.
func (p *Process) Wait(ctx context.Context) error {
	select {
	case <-p.done:
		return p.waitErr
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p *Process) adminGet(ctx context.Context, path string) (int, []byte, error) {
	if p.admin == "" {
		return 0, nil, errors.New("envoy: admin address not known yet")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.admin+path, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	return resp.StatusCode, body, err
}
