package kafka

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// ClientKind names one of the client drivers.
type ClientKind int

const (
	// Java is java/Client.java on the official Apache Kafka client, kafka-clients Version.
	Java ClientKind = iota
	// Librdkafka is python/client.py on confluent-kafka ConfluentKafkaVersion (librdkafka).
	Librdkafka
)

// String returns "java" or "librdkafka".
func (k ClientKind) String() string {
	switch k {
	case Java:
		return "java"
	case Librdkafka:
		return "librdkafka"
	}
	return fmt.Sprintf("ClientKind(%d)", int(k))
}

// Record is one JSON line a driver prints: in produce mode one per acknowledged record (Partition, Offset,
// Key), in consume mode one per record received (all fields).
type Record struct {
	// Topic is the record's topic (consume mode only).
	Topic string `json:"topic"`
	// Partition and Offset are where the broker stored the record.
	Partition int32 `json:"partition"`
	Offset    int64 `json:"offset"`
	// Key is the record's key as text; nil for a null key.
	Key *string `json:"key"`
	// Value is the record's value as text; nil for a null value (consume mode only).
	Value *string `json:"value"`
	// Headers are the record's headers in order (consume mode only).
	Headers []Header `json:"headers"`
}

// Header is one record header.
type Header struct {
	// Key is the header's name.
	Key string `json:"key"`
	// Value is the header's value as text; nil for a null value.
	Value *string `json:"value"`
}

// Header returns the value of the first header named name, and whether there is one (a null value is "").
func (r Record) Header(name string) (string, bool) {
	for _, h := range r.Headers {
		if h.Key == name {
			if h.Value == nil {
				return "", true
			}
			return *h.Value, true
		}
	}
	return "", false
}

// KeyString returns the key, "" for a null key.
func (r Record) KeyString() string {
	if r.Key == nil {
		return ""
	}
	return *r.Key
}

// Summary is what a driver run with --summary true prints instead of its records: a throughput measured
// inside the client, which leaves the process's start out.
type Summary struct {
	// Records are the records produced and acknowledged, or consumed.
	Records int64 `json:"records"`
	// Bytes are those records' key and value bytes.
	Bytes int64 `json:"bytes"`
	// Seconds run from the first send to the last acknowledgement, or from the first record consumed to
	// the last.
	Seconds float64 `json:"seconds"`
}

// Result is what one driver run gave.
type Result struct {
	// Records are the JSON lines of stdout, parsed, in order (none with --summary true).
	Records []Record
	// Summary is the one line a driver run with --summary true prints; nil without.
	Summary *Summary
	// Stderr is the driver's log (the client library's warnings and errors, and the driver's own).
	Stderr string
	// Duration is the run's wall time, from starting the process (a JVM, or a Python) to its exit.
	Duration time.Duration
}

// DefaultRunTimeout bounds one driver run of RunJava and RunPython; give the driver a smaller --timeout-ms
// (default 30000) for its own produce and consume waits.
const DefaultRunTimeout = 2 * time.Minute

// RunJava runs the Java driver (java/Client.java, compiled on first use) with bootstrap.servers=bootstrap
// and args, whose first is the mode: RunJava(t, addr, "produce", "--topic", "orders", "--count", "10",
// "--header", "traceparent=00-...", "--compression", "zstd"). See Client.java for every option. It returns the
// records the driver printed and fails the test, with the driver's stderr, when the driver exits non-zero.
func RunJava(t testing.TB, bootstrap string, args ...string) []Record {
	t.Helper()
	return runT(t, Java, bootstrap, args)
}

// RunPython runs the librdkafka driver (python/client.py on confluent-kafka) like RunJava: the same modes,
// options and output.
func RunPython(t testing.TB, bootstrap string, args ...string) []Record {
	t.Helper()
	return runT(t, Librdkafka, bootstrap, args)
}

func runT(t testing.TB, kind ClientKind, bootstrap string, args []string) []Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), DefaultRunTimeout)
	defer cancel()
	res, err := Run(ctx, kind, bootstrap, args...)
	if err != nil {
		t.Fatal(err)
	}
	mode := ""
	if len(args) > 0 {
		mode = args[0]
	}
	t.Logf("kafka: %s %s: %d records in %v", kind, mode, len(res.Records), res.Duration.Round(time.Millisecond))
	return res.Records
}

// Run runs one driver with bootstrap.servers=bootstrap and args (mode first) until it exits or ctx ends. A
// non-zero exit is an error that includes the driver's stderr; the Result holds what it printed before.
func Run(ctx context.Context, kind ClientKind, bootstrap string, args ...string) (Result, error) {
	if len(args) == 0 {
		return Result{}, errors.New("kafka: Run: no mode (produce or consume)")
	}
	var cmd *exec.Cmd
	switch kind {
	case Java:
		java, err := javaTool("java")
		if err != nil {
			return Result{}, err
		}
		cp, err := javaClasspath()
		if err != nil {
			return Result{}, err
		}
		jvm := []string{
			"-Xmx128m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true",
			"-Dorg.slf4j.simpleLogger.defaultLogLevel=warn", "-Dorg.slf4j.simpleLogger.logFile=System.err",
			"-cp", cp, "Client", args[0], "--bootstrap", bootstrap,
		}
		cmd = exec.CommandContext(ctx, java, append(jvm, args[1:]...)...)
	case Librdkafka:
		pypath, err := PythonPath()
		if err != nil {
			return Result{}, err
		}
		src, err := sourceDir()
		if err != nil {
			return Result{}, err
		}
		python := os.Getenv(PythonEnv)
		if python == "" {
			python = "python3"
		}
		script := filepath.Join(src, "python", "client.py")
		cmd = exec.CommandContext(ctx, python, append([]string{script, args[0], "--bootstrap", bootstrap}, args[1:]...)...)
		cmd.Env = append(os.Environ(), "PYTHONPATH="+pypath, "PYTHONDONTWRITEBYTECODE=1")
	default:
		return Result{}, fmt.Errorf("kafka: Run: unknown client %v", kind)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	begin := time.Now()
	runErr := cmd.Run()
	res := Result{Stderr: stderr.String(), Duration: time.Since(begin)}
	for _, line := range strings.Split(stdout.String(), "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var r struct {
			Record
			Summary *Summary `json:"summary"`
		}
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			return res, fmt.Errorf("kafka: %s %s: bad output line %q: %v", kind, args[0], line, err)
		}
		if r.Summary != nil {
			res.Summary = r.Summary
			continue
		}
		res.Records = append(res.Records, r.Record)
	}
	if runErr != nil {
		return res, fmt.Errorf("kafka: %s %s %s: %v after %v, %d records printed; stderr:\n%s",
			kind, args[0], strings.Join(args[1:], " "), runErr, res.Duration.Round(time.Millisecond),
			len(res.Records), tailString(res.Stderr, 60))
	}
	return res, nil
}

func tailString(s string, n int) string { return tail([]byte(s), n) }

var javaCompile struct {
	once sync.Once
	cp   string
	err  error
}

// javaClasspath compiles java/Client.java once per process, into a directory beside the client's jars named
// by the source's checksum (so later processes reuse it, and an edited source is compiled again), and returns
// the class path to run it with.
func javaClasspath() (string, error) {
	javaCompile.once.Do(func() {
		javaCompile.cp, javaCompile.err = compileJava()
	})
	return javaCompile.cp, javaCompile.err
}

func compileJava() (string, error) {
	libs, err := ClientLibs()
	if err != nil {
		return "", err
	}
	src, err := sourceDir()
	if err != nil {
		return "", err
	}
	file := filepath.Join(src, "java", "Client.java")
	code, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("kafka: %w", err)
	}
	sum := sha256.Sum256(code)
	jars := filepath.Join(libs, "*")
	out := filepath.Join(filepath.Dir(libs), "classes-"+hex.EncodeToString(sum[:8]))
	if _, err := os.Stat(filepath.Join(out, "Client.class")); err == nil {
		return out + string(os.PathListSeparator) + jars, nil
	}
	javac, err := javaTool("javac")
	if err != nil {
		return "", err
	}
	// Compile into a fresh directory and rename it into place, so a concurrent process (another test
	// package) never runs half-written classes. When the tools directory is not writable, a temporary
	// directory serves this process.
	parent := filepath.Dir(libs)
	tmp, err := os.MkdirTemp(parent, ".classes-")
	if err != nil {
		if tmp, err = os.MkdirTemp("", "kafka-java-client-"); err != nil {
			return "", err
		}
		parent = ""
	}
	cmd := exec.Command(javac, "-nowarn", "-d", tmp, "-cp", jars, file)
	if b, err := cmd.CombinedOutput(); err != nil {
		_ = os.RemoveAll(tmp)
		return "", fmt.Errorf("kafka: javac %s: %v\n%s", file, err, b)
	}
	if parent == "" {
		return tmp + string(os.PathListSeparator) + jars, nil
	}
	if err := os.Rename(tmp, out); err != nil {
		_ = os.RemoveAll(tmp) // another process won the rename: its classes are the same
		if _, serr := os.Stat(filepath.Join(out, "Client.class")); serr != nil {
			return "", fmt.Errorf("kafka: %w", err)
		}
	}
	return out + string(os.PathListSeparator) + jars, nil
}
