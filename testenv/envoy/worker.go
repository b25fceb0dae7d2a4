package envoy

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// WorkerThread is the name (/proc/<pid>/task/<tid>/comm) Envoy 1.40 gives its first worker thread.
const WorkerThread = "wrk:worker_0"

// clockTicks is sysconf(_SC_CLK_TCK), the unit of utime and stime in /proc/<pid>/task/<tid>/stat: 100 on
// every Linux architecture Envoy runs on (assumed, not read, to stay free of cgo).
const clockTicks = 100

// WorkerCPU returns the CPU time (utime+stime) Envoy's first worker thread has used so far, read from /proc
// (Linux): with one worker (Options.Concurrency 1) all the proxying, and every plugin's work, is done there.
// The difference between two reads around a load is that load's cost, free of the main thread's and of other
// processes'; its resolution is 10 ms.
func (p *Process) WorkerCPU() (time.Duration, error) {
	p.workerOnce.Do(func() { p.workerStat, p.workerErr = findWorker(p.PID()) })
	if p.workerErr != nil {
		return 0, p.workerErr
	}
	b, err := os.ReadFile(p.workerStat)
	if err != nil {
		return 0, err
	}
	return parseThreadCPU(b)
}

// findWorker returns the stat file of Envoy's worker thread, found by its comm.
func findWorker(pid int) (string, error) {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return "", fmt.Errorf("envoy: %w", err)
	}
	var names []string
	for _, t := range tasks {
		b, err := os.ReadFile(filepath.Join(dir, t.Name(), "comm"))
		if err != nil {
			continue
		}
		name := strings.TrimSpace(string(b))
		if name == WorkerThread {
			return filepath.Join(dir, t.Name(), "stat"), nil
		}
		names = append(names, name)
	}
	return "", fmt.Errorf("envoy %d: no thread %q among %q", pid, WorkerThread, names)
}

// parseThreadCPU returns utime+stime of a /proc/<pid>/task/<tid>/stat file's contents.
func parseThreadCPU(b []byte) (time.Duration, error) {
	// The comm field is parenthesised and may hold spaces and parentheses; the fields after the last ')'
	// start with state (field 3).
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, fmt.Errorf("envoy: thread stat %q: no comm field", b)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("envoy: thread stat: %d fields after comm, want at least 13", len(f))
	}
	var ticks int64
	for _, s := range f[11:13] { // utime (field 14) and stime (field 15)
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("envoy: thread stat: %w", err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}
