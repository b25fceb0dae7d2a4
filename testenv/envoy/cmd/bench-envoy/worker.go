package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// workerThread is the name (/proc/<pid>/task/<tid>/comm) Envoy 1.40 gives its first worker thread.
const workerThread = "wrk:worker_0"

// clockTicks is sysconf(_SC_CLK_TCK), the unit of utime and stime in /proc/<pid>/task/<tid>/stat: 100 on
// every Linux architecture Envoy runs on (assumed, not read, to stay free of cgo).
const clockTicks = 100

// findWorker returns the stat file of Envoy's worker thread, found by its comm.
func findWorker(pid int) (string, error) {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	var names []string
	for _, t := range tasks {
		b, err := os.ReadFile(filepath.Join(dir, t.Name(), "comm"))
		if err != nil {
			continue
		}
		name := strings.TrimSpace(string(b))
		if name == workerThread {
			return filepath.Join(dir, t.Name(), "stat"), nil
		}
		names = append(names, name)
	}
	return "", fmt.Errorf("envoy %d: no thread %q among %q", pid, workerThread, names)
}

// threadCPU returns utime+stime of the thread whose stat file is path.
func threadCPU(path string) (time.Duration, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	// The comm field is parenthesised and may hold spaces; the fields after it start with state (field 3).
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, fmt.Errorf("%s: no comm field", path)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("%s: %d fields after comm", path, len(f))
	}
	var ticks int64
	for _, s := range f[11:13] { // utime (field 14) and stime (field 15)
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", path, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}
