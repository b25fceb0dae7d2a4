// Package load is a closed-loop HTTP/1.1 load generator for benchmarks on loopback: a fixed number of
// keep-alive connections each send one pre-encoded request at a time and read the response, recording every
// request's latency. It is lean on purpose (no net/http client, no allocation per request) so it is not
// the bottleneck in front of a single Envoy worker.
package load

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Request is the request every connection sends.
type Request struct {
	Method string // default GET
	Path   string // default /
	Host   string // default the target address
	Header http.Header
}

// encode renders the request once.
func (r Request) encode(addr string) []byte {
	method, path, host := r.Method, r.Path, r.Host
	if method == "" {
		method = http.MethodGet
	}
	if path == "" {
		path = "/"
	}
	if host == "" {
		host = addr
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\n", method, path, host)
	_ = r.Header.Write(&b)
	b.WriteString("\r\n")
	return b.Bytes()
}

// Result is what one run measured.
type Result struct {
	Requests  int           // completed requests (responses read)
	Errors    int           // connection or protocol errors (each ends a connection, which is redialled)
	Non2xx    int           // responses with a status outside 200-299
	Elapsed   time.Duration // wall time of the run
	Latencies []time.Duration
}

// RPS is completed requests per second.
func (r Result) RPS() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Requests) / r.Elapsed.Seconds()
}

// Percentile returns the q-th latency quantile (0 < q <= 1) of the run; it sorts Latencies on first use.
func (r *Result) Percentile(q float64) time.Duration {
	if len(r.Latencies) == 0 {
		return 0
	}
	if !slices.IsSorted(r.Latencies) {
		slices.Sort(r.Latencies)
	}
	i := int(q*float64(len(r.Latencies))+0.5) - 1
	return r.Latencies[min(max(i, 0), len(r.Latencies)-1)]
}

// Merge adds o's counts and latencies to r (Elapsed adds up too).
func (r *Result) Merge(o Result) {
	r.Requests += o.Requests
	r.Errors += o.Errors
	r.Non2xx += o.Non2xx
	r.Elapsed += o.Elapsed
	r.Latencies = append(r.Latencies, o.Latencies...)
}

// Run drives addr (host:port) with conns connections for d, or until ctx is done. It fails only if no
// request at all completed.
func Run(ctx context.Context, addr string, req Request, conns int, d time.Duration) (Result, error) {
	if conns <= 0 {
		return Result{}, errors.New("load: conns must be positive")
	}
	wire := req.encode(addr)
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()

	results := make([]Result, conns)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = worker(ctx, addr, wire)
		}()
	}
	wg.Wait()
	total := Result{Elapsed: time.Since(start)}
	for _, r := range results {
		total.Requests += r.Requests
		total.Errors += r.Errors
		total.Non2xx += r.Non2xx
		total.Latencies = append(total.Latencies, r.Latencies...)
	}
	if total.Requests == 0 {
		return total, fmt.Errorf("load: no request to %s completed (%d errors)", addr, total.Errors)
	}
	return total, nil
}

// maxConsecutiveErrors ends a worker that cannot get a single request through.
const maxConsecutiveErrors = 100

func worker(ctx context.Context, addr string, wire []byte) Result {
	var res Result
	res.Latencies = make([]time.Duration, 0, 1<<14)
	var dialer net.Dialer
	var conn net.Conn
	var rd *bufio.Reader
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	// Reads and writes give up when the run ends (Run always sets a deadline); errors after it do not count.
	deadline, _ := ctx.Deadline()
	over := func() bool { return ctx.Err() != nil || !time.Now().Before(deadline) }

	consecutive := 0
	for !over() && consecutive < maxConsecutiveErrors {
		if conn == nil {
			c, err := dialer.DialContext(ctx, "tcp", addr)
			if err != nil {
				if !over() {
					res.Errors++
					consecutive++
				}
				continue
			}
			_ = c.SetDeadline(deadline)
			conn, rd = c, bufio.NewReaderSize(c, 16<<10)
		}
		t0 := time.Now()
		status, err := roundTrip(conn, rd, wire)
		if err != nil {
			if !over() {
				res.Errors++
				consecutive++
			}
			conn.Close()
			conn = nil
			continue
		}
		consecutive = 0
		res.Latencies = append(res.Latencies, time.Since(t0))
		res.Requests++
		if status < 200 || status > 299 {
			res.Non2xx++
		}
	}
	return res
}

// roundTrip writes the request and reads one response (Content-Length or chunked body), returning its
// status code.
func roundTrip(conn net.Conn, rd *bufio.Reader, wire []byte) (int, error) {
	if _, err := conn.Write(wire); err != nil {
		return 0, err
	}
	line, err := rd.ReadSlice('\n')
	if err != nil {
		return 0, err
	}
	// "HTTP/1.1 200 OK\r\n"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return 0, fmt.Errorf("load: bad status line %q", line)
	}
	status, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, fmt.Errorf("load: bad status line %q", line)
	}
	length, chunked := -1, false
	for {
		line, err := rd.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		if len(line) <= 2 {
			break
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		value = bytes.TrimSpace(value)
		switch {
		case asciiEqualFold(name, "content-length"):
			if length, err = strconv.Atoi(string(value)); err != nil {
				return 0, fmt.Errorf("load: bad content-length %q", value)
			}
		case asciiEqualFold(name, "transfer-encoding"):
			chunked = bytes.EqualFold(value, []byte("chunked"))
		}
	}
	switch {
	case chunked:
		return status, discardChunked(rd)
	case length >= 0:
		_, err := rd.Discard(length)
		return status, err
	default:
		return 0, errors.New("load: response without length (connection-delimited bodies are not supported)")
	}
}

func discardChunked(rd *bufio.Reader) error {
	for {
		line, err := rd.ReadSlice('\n')
		if err != nil {
			return err
		}
		sizeText, _, _ := bytes.Cut(bytes.TrimSpace(line), []byte(";"))
		size, err := strconv.ParseInt(string(sizeText), 16, 32)
		if err != nil {
			return fmt.Errorf("load: bad chunk size %q", line)
		}
		if size == 0 {
			// Trailers end with an empty line.
			for {
				line, err := rd.ReadSlice('\n')
				if err != nil {
					return err
				}
				if len(line) <= 2 {
					return nil
				}
			}
		}
		if _, err := rd.Discard(int(size) + 2); err != nil {
			return err
		}
	}
}

func asciiEqualFold(b []byte, s string) bool { return bytes.EqualFold(b, []byte(s)) }
