// Command demo runs meshtrace end to end on one machine: it starts `indexer serve` on the embedded store,
// drives the demo mesh (package testenv/demo) through the compiled filter, waits until every span is
// searchable, and answers "traces of customer 123 that touched inventory-service and took more than 500 ms in
// the last hour" with the indexer's own CLI. Unless -once is given it then keeps the indexer running.
//
// With -meili the store is a real Meilisearch instead (the pinned binary, see testenv/meilisearch), set up as
// in production: `indexer meili-keys` makes the two restricted API keys with the master key, and the indexer
// runs with those keys only.
package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/meshtrace/meshtrace/indexer/api"
	"github.com/meshtrace/meshtrace/indexer/document"
	"github.com/meshtrace/meshtrace/testenv/demo"
	"github.com/meshtrace/meshtrace/testenv/meilisearch"
	"github.com/meshtrace/meshtrace/testenv/wasmhost"
)

// question is the incident responder's question, in the query language.
const question = `customer_id=123 service=inventory-service trace.duration>500ms since=1h`

func main() {
	var (
		indexer  = flag.String("indexer", "bin/indexer", "the indexer binary")
		wasmPath = flag.String("wasm", "build/filter.wasm", "the compiled filter")
		dataDir  = flag.String("data-dir", "data/demo", "embedded store folder (emptied first)")
		requests = flag.Int("requests", 600, "gateway requests to drive")
		once     = flag.Bool("once", false, "exit after printing the answer")
		meili    = flag.Bool("meili", false, "store in a real Meilisearch (started from the pinned binary, database under -data-dir) instead of the embedded store")
	)
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *indexer, *wasmPath, *dataDir, *requests, *once, *meili); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, indexerBin, wasmPath, dataDir string, requests int, once, meili bool) error {
	ports, err := freePorts(3)
	if err != nil {
		return err
	}
	httpAddr, otlpHTTP, otlpGRPC := ports[0], ports[1], ports[2]
	base := "http://" + httpAddr
	if err := os.RemoveAll(dataDir); err != nil {
		return err
	}

	srv := exec.Command(indexerBin, "serve", "--data-dir", dataDir,
		"--api-addr", httpAddr, "--otlp-http-addr", otlpHTTP, "--otlp-grpc-addr", otlpGRPC)
	if meili {
		ms, keys, err := startMeilisearch(ctx, indexerBin, dataDir)
		if err != nil {
			return err
		}
		defer ms.Stop()
		step("starting the indexer on Meilisearch %s with the two restricted keys only", ms.URL)
		srv.Args = append(srv.Args, "--meili-url", ms.URL)
		srv.Env = append(os.Environ(), keys...) // in the environment, not in ps
	} else {
		step("starting the indexer on the embedded store (%s)", dataDir)
	}
	logPath := filepath.Clean(dataDir) + "-indexer.log"
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return err
	}
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logFile.Close()
	srv.Stdout, srv.Stderr = logFile, logFile
	if err := srv.Start(); err != nil {
		return fmt.Errorf("start %s: %w", indexerBin, err)
	}
	exited := make(chan struct{})
	var exitErr error
	go func() { exitErr = srv.Wait(); close(exited) }()
	defer shutdown(srv, exited)
	if err := waitHealthy(ctx, base, exited); err != nil {
		return fmt.Errorf("%w (log: %s)", err, logPath)
	}

	step("loading %s on the wazero proxy-wasm host", wasmPath)
	wasm, err := os.ReadFile(wasmPath)
	if err != nil {
		return err
	}
	mod, err := wasmhost.Compile(ctx, wasm)
	if err != nil {
		return err
	}
	defer mod.Close(context.WithoutCancel(ctx))

	step("driving %d requests: gateway -> frontend -> checkout -> inventory-service (only the gateway sees x-customer-id)", requests)
	res, err := demo.Run(ctx, demo.Config{
		Module: mod, Endpoint: "http://" + otlpHTTP + "/v1/traces", Requests: requests, Seed: 42,
		End: time.Now(), Window: 50 * time.Minute, Progress: os.Stdout,
	})
	if err != nil {
		return err
	}
	fmt.Printf("   %d requests (%d slow, %d failing); the proxies exported %d spans (%d dropped, %d failed exports)\n",
		res.Requests, res.Slow, res.Failed, res.SpansExported, res.SpansDropped, res.ExportFailures)

	step("waiting until all %d spans and %d traces are searchable", res.SpansExported, res.Requests)
	if err := waitIndexed(ctx, base, int(res.SpansExported), res.Requests); err != nil {
		return err
	}

	step("traces of customer 123 that touched inventory-service and took more than 500 ms in the last hour")
	fmt.Printf("   $ bin/indexer search --traces '%s'\n", question)
	if err := runCLI(ctx, indexerBin, base, "search", "--traces", question); err != nil {
		return err
	}
	var found api.SearchResponse
	if err := getJSON(ctx, base+"/api/v1/search?target=traces&limit=100&q="+url.QueryEscape(question), &found); err != nil {
		return err
	}
	if len(found.Traces) == 0 {
		return errors.New("the search found no trace")
	}
	slowest := slices.MaxFunc(found.Traces, func(a, b document.Trace) int { return cmp.Compare(a.Duration, b.Duration) })
	id := slowest.TraceID
	var tr api.TraceResponse
	if err := getJSON(ctx, base+"/api/v1/traces/"+id, &tr); err != nil {
		return err
	}
	for _, s := range tr.Spans {
		if fmt.Sprint(s.Attr["customer_id"]) != "123" {
			return fmt.Errorf("span %s of %s in trace %s carries customer_id %v, want 123", s.SpanID, s.Service, id, s.Attr["customer_id"])
		}
	}
	step("the slowest of them, as a tree (every span carries customer_id=123, though only the gateway saw the header)")
	fmt.Printf("   $ bin/indexer trace %s\n", id)
	if err := runCLI(ctx, indexerBin, base, "trace", id); err != nil {
		return err
	}
	if once {
		return nil
	}
	fmt.Printf(`
The indexer keeps running (Ctrl-C stops it):
  web page        %[1]s/
  search API      %[1]s/api/v1/search?q=%[3]s
  Jaeger API      %[1]s/api/traces?service=inventory-service&tags=%%7B%%22customer_id%%22%%3A%%22123%%22%%7D
  OTLP/HTTP       http://%[2]s/v1/traces
Try:
  bin/indexer search --server %[1]s 'service=inventory-service duration>500ms since=10m'
  bin/indexer search --server %[1]s --traces 'customer_id=456 error=true'
  bin/indexer trace --server %[1]s %[4]s
`, base, otlpHTTP, url.QueryEscape(question), id)
	select {
	case <-ctx.Done():
		return nil
	case <-exited:
		return fmt.Errorf("the indexer exited: %v (log: %s)", exitErr, logPath)
	}
}

func step(format string, args ...any) { fmt.Printf("\n==> "+format+"\n", args...) }

// startMeilisearch starts a Meilisearch server with its database under dataDir/meilisearch and runs
// `indexer meili-keys` against it with the master key, as the deploy Job does. It returns the server and the
// MESHTRACE_MEILI_KEY=... and MESHTRACE_MEILI_SEARCH_KEY=... lines the command printed.
func startMeilisearch(ctx context.Context, indexerBin, dataDir string) (*meilisearch.Server, []string, error) {
	dir := filepath.Join(dataDir, "meilisearch")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, err
	}
	step("starting Meilisearch %s (%s; log: %s)", meilisearch.Version, dir, filepath.Join(dir, meilisearch.LogFile))
	ms, err := meilisearch.Start(ctx, meilisearch.Config{Dir: dir, MaxIndexingThreads: 2, MaxIndexingMemory: "512 MiB"})
	if err != nil {
		return nil, nil, err
	}
	step("making the indexer's keys with the master key: index management and search only, on meshtrace-*")
	fmt.Printf("   $ MEILI_MASTER_KEY=... bin/indexer meili-keys --meili-url %s\n", ms.URL)
	cmd := exec.CommandContext(ctx, indexerBin, "meili-keys", "--meili-url", ms.URL)
	cmd.Env = append(os.Environ(), "MEILI_MASTER_KEY="+ms.Key)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		ms.Stop()
		return nil, nil, fmt.Errorf("indexer meili-keys: %w\n%s", err, stderr.String())
	}
	var keys []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		name, value, _ := strings.Cut(line, "=")
		keys = append(keys, line)
		fmt.Printf("   %s=%s...\n", name, value[:min(8, len(value))])
	}
	if len(keys) != 2 {
		ms.Stop()
		return nil, nil, fmt.Errorf("indexer meili-keys printed %q, want two keys", out)
	}
	return ms, keys, nil
}

// runCLI runs the indexer's CLI against the demo's server, its output going to ours.
func runCLI(ctx context.Context, bin, server string, args ...string) error {
	cmd := exec.CommandContext(ctx, bin, append([]string{args[0], "--server", server}, args[1:]...)...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("indexer %s: %w", args[0], err)
	}
	return nil
}

func getJSON(ctx context.Context, u string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e api.ErrorResponse
		json.NewDecoder(resp.Body).Decode(&e)
		return fmt.Errorf("GET %s: %s: %s", u, resp.Status, e.Error)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

func waitHealthy(ctx context.Context, base string, exited <-chan struct{}) error {
	deadline := time.After(60 * time.Second)
	for {
		resp, err := http.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-exited:
			return errors.New("the indexer exited at start")
		case <-deadline:
			return errors.New("the indexer did not become healthy in 60 s")
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// waitIndexed polls the search API until the spans and traces of the last two hours are searchable (every
// gateway request is one trace).
func waitIndexed(ctx context.Context, base string, spans, traces int) error {
	deadline := time.Now().Add(2 * time.Minute)
	var got, gotTraces api.SearchResponse
	for {
		// The span and the trace documents are separate indexes (in Meilisearch, separate task queues):
		// the answer needs both.
		err := getJSON(ctx, base+"/api/v1/search?limit=1&q="+url.QueryEscape("since=2h"), &got)
		if err == nil {
			err = getJSON(ctx, base+"/api/v1/search?target=traces&limit=1&q="+url.QueryEscape("since=2h"), &gotTraces)
		}
		if err == nil && got.Total >= spans && gotTraces.Total >= traces {
			fmt.Printf("   %d spans and %d traces searchable\n", got.Total, gotTraces.Total)
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d spans and %d of %d traces searchable after 2 minutes (last error: %v)",
				got.Total, spans, gotTraces.Total, traces, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// shutdown stops the indexer gracefully (SIGTERM), killing it if it does not exit in 30 s.
func shutdown(cmd *exec.Cmd, exited <-chan struct{}) {
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		slog.Warn("indexer did not stop in 30 s; killing it")
		cmd.Process.Kill()
		<-exited
	}
}

// freePorts returns n loopback addresses with ports the kernel just handed out.
func freePorts(n int) ([]string, error) {
	var addrs []string
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		addrs = append(addrs, l.Addr().String())
	}
	return addrs, nil
}
