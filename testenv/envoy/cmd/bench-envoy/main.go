// Command bench-envoy measures what the meshtrace filter costs inside Envoy: requests per second and p50/p99
// latency through an Envoy sidecar inbound listener without the filter, with a do-nothing TinyGo plugin
// (package noop: the cost of Envoy's Wasm machinery alone), with the filter's TinyGo build and with its Go
// build, with Envoy's native OpenTelemetry tracer alone (100 % sampling, OTLP/HTTP export, custom tags as
// Istio sets them) and with that tracer plus the TinyGo build, in one run, in alternating rounds (the
// machine is shared and noisy, so only side-by-side ratios mean anything), and each Envoy's resident memory
// after warm-up and after at least -requests requests. Each round also reads the CPU time (utime+stime) of
// every Envoy's worker thread before and after, so it reports the worker's CPU per request and that minus
// the no-filter Envoy's in the same round.
//
// Every Envoy has one worker thread and routes to a second Envoy that answers directly, so the measured
// worker does the proxying and nothing else. The filter's and the tracer's OTLP exports go to a Go HTTP
// server in this process (one per Envoy, so each Envoy's exports are counted) that reads the whole body
// before it answers 200, so the exporting connections stay open. The load generator (package load) keeps
// -conns keep-alive connections busy.
//
// -set tags adds the filter in tag-only mode (trace.mode envoy: tag rules, envoy_header copies and
// baggage, no span, no trace context rewrite), alone and beside the tracer, as Istio with tracing on runs
// it, and the filter with direction auto (the listener direction read per stream). -build name=path adds more TinyGo builds of the filter with the same policy (an earlier build, or
// one compiled with other flags), so a change is measured against its predecessor in one run.
//
// -set price runs the price list instead: Envoys with package pricelist making -calls host calls of one
// kind per request, and reports each call's cost as the worker CPU over the no-call plugin's, per call.
//
// Run it with `make bench-envoy`, which builds the filter and installs Envoy first.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/meshtrace/meshtrace/filter/plugin"
	"github.com/meshtrace/meshtrace/filter/wasmexports"
	"github.com/meshtrace/meshtrace/testenv/artifact"
	"github.com/meshtrace/meshtrace/testenv/envoy"
	"github.com/meshtrace/meshtrace/testenv/envoy/load"
)

// policy is the sidecar's plugin configuration: three tag rules, as in the filter's wazero benchmark.
const policy = `{
  "direction": "inbound",
  "tags": [
    {"attribute": "customer_id", "from": [{"header": "x-customer-id"}, {"baggage": "customer_id"}],
     "regex": "^(?:cust-)?([0-9]+)$", "propagate": true},
    {"attribute": "tenant", "from": [{"cookie": "tenant"}], "lowercase": true},
    {"attribute": "campaign", "from": [{"query": "utm_campaign"}], "max_length": 32}
  ]
}`

// tagPolicy is policy in tag-only mode: the filter records no HTTP span and leaves the trace context to
// Envoy's tracer, and copies the customer id into the header Envoy's custom tag reads.
const tagPolicy = `{
  "direction": "inbound",
  "trace": {"mode": "envoy"},
  "tags": [
    {"attribute": "customer_id", "from": [{"header": "x-customer-id"}, {"baggage": "customer_id"}],
     "regex": "^(?:cust-)?([0-9]+)$", "propagate": true, "envoy_header": "x-meshtrace-customer-id"},
    {"attribute": "tenant", "from": [{"cookie": "tenant"}], "lowercase": true},
    {"attribute": "campaign", "from": [{"query": "utm_campaign"}], "max_length": 32}
  ]
}`

// priceOps are the host calls the price list measures (see package pricelist).
var priceOps = []string{"clock", "property", "log-property", "headers", "header", "replace", "expr", "end-props", "end-expr"}

// request is what every connection sends: it joins an incoming trace and matches all three rules.
var request = load.Request{
	Path: "/checkout?utm_campaign=autumn-sale",
	Host: "checkout.shop.svc.cluster.local",
	Header: http.Header{
		"X-Customer-Id": {"cust-123"},
		"Cookie":        {"session=abc; tenant=ACME"},
		"Traceparent":   {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
		"User-Agent":    {"bench-envoy"},
	},
}

type config struct {
	tinygo, golang string
	set            string
	only           string
	builds         builds
	calls          int
	ops            string
	conns          int
	round, warmup  time.Duration
	requests       int
	maxRounds      int
}

// builds are the -build name=path flags, in order.
type builds [][2]string

func (b *builds) String() string { return fmt.Sprint(*b) }

func (b *builds) Set(s string) error {
	name, path, ok := strings.Cut(s, "=")
	if !ok || name == "" || path == "" {
		return fmt.Errorf("want name=path, got %q", s)
	}
	*b = append(*b, [2]string{name, path})
	return nil
}

func main() {
	var cfg config
	flag.StringVar(&cfg.tinygo, "tinygo", envOr("MESHTRACE_FILTER_WASM", "build/filter.wasm"), "TinyGo build of the filter")
	flag.StringVar(&cfg.golang, "go", envOr("MESHTRACE_FILTER_GO_WASM", "build/filter-go.wasm"), "Go build of the filter")
	flag.StringVar(&cfg.set, "set", "main", "Envoys to run: main, tags (main plus tag-only mode) or price (the host-call price list)")
	flag.Var(&cfg.builds, "build", "name=path: one more TinyGo build of the filter, run with the same policy (repeatable)")
	flag.StringVar(&cfg.only, "only", "", "comma-separated Envoys of the set to run (the no-filter one always runs); default all")
	flag.IntVar(&cfg.calls, "calls", 10, "host calls per request in the price list")
	flag.StringVar(&cfg.ops, "ops", strings.Join(priceOps, ","), "the price list's calls")
	flag.IntVar(&cfg.conns, "conns", 16, "concurrent keep-alive connections")
	flag.DurationVar(&cfg.round, "round", 5*time.Second, "duration of one measured round")
	flag.DurationVar(&cfg.warmup, "warmup", 3*time.Second, "unmeasured warm-up per Envoy")
	flag.IntVar(&cfg.requests, "requests", 1_000_000, "keep alternating rounds until every Envoy served this many requests")
	flag.IntVar(&cfg.maxRounds, "max-rounds", 300, "upper bound on rounds per Envoy")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, cfg); err != nil {
		slog.Error("bench-envoy", "err", err)
		os.Exit(1)
	}
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// variant is one Envoy under test.
type variant struct {
	name    string
	plugin  string // empty: no filter
	config  string
	tracer  bool     // Envoy's native OpenTelemetry tracer on
	calls   int      // price list: host calls per request
	ref     *variant // price list: the same plugin making no call
	proc    *envoy.Process
	addr    string
	sink    *sink
	worker  string    // /proc/<pid>/task/<tid>/stat of the worker thread
	rounds  []float64 // requests/s per round
	cpu     []float64 // worker CPU per request per round, us
	cpuDiff []float64 // cpu minus the no-filter Envoy's in the same round, us
	cpuRel  []float64 // cpu over the no-filter Envoy's in the same round
	total   load.Result
	rssWarm int64
	rss     []int64 // after each round
}

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

// sink is an OTLP/HTTP collector that reads every request's whole body, then answers 200 (as a collector
// does), so Envoy keeps the exporting connection open. It counts the posts to /v1/traces and their bytes.
type sink struct {
	addr         string
	posts, bytes atomic.Int64
	srv          *http.Server
}

func startSink() (*sink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &sink{addr: ln.Addr().String()}
	s.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		if r.URL.Path == "/v1/traces" {
			s.posts.Add(1)
			s.bytes.Add(n)
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK)
	})}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

// collectorCluster is the cluster of Envoy's tracer (an Istio-style name would do too: the Host comes from
// the export URI).
const collectorCluster = "otel-collector"

// tracing is Envoy's OpenTelemetry tracer as Istio's Telemetry API sets it up with one header custom tag:
// 100 % random sampling, service name <app>.<namespace>, the Istio literal tags, OTLP/HTTP to the
// collector. Envoy's flush settings stay at their defaults (5 s or 5 spans), as in Istio.
var tracing = &envoy.Tracing{
	Provider:       envoy.OpenTelemetry,
	Cluster:        collectorCluster,
	OTLPHTTPURI:    "http://otel-collector.istio-system.svc.cluster.local:4318/v1/traces",
	ServiceName:    "checkout.shop",
	RandomSampling: 100,
	CustomTags: []envoy.CustomTag{
		{Tag: "customer_id", Header: "x-customer-id"},
		{Tag: "istio.canonical_service", Literal: "checkout"},
		{Tag: "istio.canonical_revision", Literal: "v1"},
		{Tag: "istio.namespace", Literal: "shop"},
		{Tag: "istio.mesh_id", Literal: "cluster.local"},
	},
}

func run(ctx context.Context, cfg config) error {
	dir, err := os.MkdirTemp("", "bench-envoy-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	variants, err := plan(cfg, dir)
	if err != nil {
		return err
	}
	if cfg.only != "" {
		keep := map[*variant]bool{variants[0]: true}
		for _, v := range variants {
			if slices.Contains(strings.Split(cfg.only, ","), v.name) {
				keep[v], keep[v.ref] = true, v.ref != nil // a price is measured against its reference
			}
		}
		variants = slices.DeleteFunc(variants, func(v *variant) bool { return !keep[v] })
	}

	upstream, err := start(ctx, dir, "upstream", envoy.Bootstrap{
		Listeners: []envoy.Listener{{Name: "app", Direct: &envoy.DirectResponse{Status: 200, Body: "ok\n"}}},
	})
	if err != nil {
		return err
	}
	defer upstream.Close()
	upstreamAddr, err := upstream.ListenerAddr(ctx, "app")
	if err != nil {
		return err
	}

	for _, v := range variants {
		if v.sink, err = startSink(); err != nil {
			return err
		}
		defer v.sink.srv.Close()
		l := envoy.Listener{Name: "inbound", Direction: envoy.Inbound, Cluster: "inbound|8080||"}
		if v.plugin != "" {
			l.Wasm = &envoy.Wasm{Name: "meshtrace", VMID: "meshtrace", File: v.plugin, Config: v.config}
		}
		if v.tracer {
			l.Tracing = tracing
		}
		b := envoy.Bootstrap{
			Node: envoy.Node{Metadata: map[string]any{
				"NAMESPACE": "shop", "WORKLOAD_NAME": "checkout", "LABELS": map[string]any{"app": "checkout"},
			}},
			Listeners: []envoy.Listener{l},
			Clusters: []envoy.Cluster{
				{Name: "inbound|8080||", Address: upstreamAddr},
				// The filter's default export cluster.
				{Name: "outbound|4318||meshtrace-indexer.meshtrace.svc.cluster.local", Address: v.sink.addr},
				{Name: collectorCluster, Address: v.sink.addr},
			},
		}
		if v.proc, err = start(ctx, dir, v.name, b); err != nil {
			return err
		}
		defer v.proc.Close()
		if v.worker, err = findWorker(v.proc.PID()); err != nil {
			return err
		}
		if v.addr, err = v.proc.ListenerAddr(ctx, "inbound"); err != nil {
			return err
		}
	}

	for _, v := range variants {
		if _, err := load.Run(ctx, v.addr, request, cfg.conns, cfg.warmup); err != nil {
			return fmt.Errorf("%s warm-up: %w", v.name, err)
		}
		if v.rssWarm, err = v.proc.RSS(); err != nil {
			return err
		}
	}
	slog.Info("measuring", "conns", cfg.conns, "round", cfg.round, "requests_per_envoy", cfg.requests)

	for round := 0; round < cfg.maxRounds && !done(variants, cfg.requests, round); round++ {
		// Rotate the order so no variant always runs first after a pause.
		for i := range variants {
			v := variants[(round+i)%len(variants)]
			cpu0, err := threadCPU(v.worker)
			if err != nil {
				return err
			}
			res, err := load.Run(ctx, v.addr, request, cfg.conns, cfg.round)
			if err != nil {
				return fmt.Errorf("%s round %d: %w", v.name, round, err)
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			cpu1, err := threadCPU(v.worker)
			if err != nil {
				return err
			}
			v.rounds = append(v.rounds, res.RPS())
			v.cpu = append(v.cpu, float64(cpu1-cpu0)/1e3/float64(max(res.Requests, 1)))
			v.total.Merge(res)
			rss, err := v.proc.RSS()
			if err != nil {
				return err
			}
			v.rss = append(v.rss, rss)
		}
		args := []any{"n", round + 1}
		for _, v := range variants {
			v.cpuDiff = append(v.cpuDiff, last(v.cpu)-last(variants[0].cpu))
			v.cpuRel = append(v.cpuRel, last(v.cpu)/last(variants[0].cpu))
			args = append(args, v.name+"_rps", int(last(v.rounds)), v.name+"_us", fmt.Sprintf("%.1f", last(v.cpu)))
		}
		slog.Info("round", args...)
	}
	return report(ctx, variants)
}

// plan returns the Envoys of cfg.set, the no-filter Envoy first, building the test plugins into dir.
func plan(cfg config, dir string) ([]*variant, error) {
	paths := []string{cfg.tinygo, cfg.golang}
	for _, b := range cfg.builds {
		paths = append(paths, b[1])
	}
	for _, p := range paths {
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("%w (run `make filter`)", err)
		}
	}
	none := &variant{name: "none"}
	switch cfg.set {
	case "main", "tags":
		noop, err := artifact.BuildPlugin("./testenv/envoy/cmd/bench-envoy/noop", dir)
		if err != nil {
			return nil, err
		}
		vs := []*variant{
			none,
			{name: "noop", plugin: noop[0].Path, config: "{}"}, // the TinyGo build
			{name: "tinygo", plugin: cfg.tinygo, config: policy},
		}
		for _, b := range cfg.builds {
			vs = append(vs, &variant{name: b[0], plugin: b[1], config: policy})
		}
		vs = append(vs,
			&variant{name: "go", plugin: cfg.golang, config: policy},
			&variant{name: "otel", tracer: true},
			&variant{name: "otel+tinygo", plugin: cfg.tinygo, config: policy, tracer: true},
		)
		if cfg.set == "tags" {
			vs = append(vs,
				&variant{name: "tags", plugin: cfg.tinygo, config: tagPolicy},
				&variant{name: "otel+tags", plugin: cfg.tinygo, config: tagPolicy, tracer: true},
				// direction auto: the listener direction read on every stream, as before the Istio
				// rendering fixed it per WasmPlugin side.
				&variant{name: "auto", plugin: cfg.tinygo, config: strings.Replace(policy, `"inbound"`, `"auto"`, 1)},
			)
		}
		return vs, nil
	case "price":
		if cfg.calls < 1 {
			return nil, fmt.Errorf("-calls %d: want at least 1", cfg.calls)
		}
		pl, err := artifact.BuildPlugin("./testenv/envoy/cmd/bench-envoy/pricelist", dir)
		if err != nil {
			return nil, err
		}
		// The same module as the shipped filter is built: no-op HTTP callbacks trimmed, ABI 0.2.1.
		trimmed := filepath.Join(dir, "pricelist-trimmed.wasm")
		if err := trim(pl[0].Path, trimmed, plugin.TrimmedExports, plugin.ABIExport); err != nil {
			return nil, err
		}
		// The SDK's module as built (ABI 0.2.0), and with only the callbacks trimmed: the first pair prices
		// the two callbacks a request without a body makes into no-op exports (response headers and body),
		// the second what ABI 0.2.1 changes for a request header write (Envoy's route cache).
		abi020 := filepath.Join(dir, "pricelist-abi020.wasm")
		if err := trim(pl[0].Path, abi020, plugin.TrimmedExports, ""); err != nil {
			return nil, err
		}
		ref := &variant{name: "price:none", plugin: trimmed, config: "none 0"}
		untrimmed := &variant{name: "price:untrimmed", plugin: pl[0].Path, config: "none 0", calls: 2}
		ref020 := &variant{name: "price:none@0.2.0", plugin: abi020, config: "none 0"}
		vs := []*variant{none, ref, untrimmed, ref020}
		for _, op := range strings.Split(cfg.ops, ",") {
			if !slices.Contains(priceOps, op) {
				return nil, fmt.Errorf("-ops: unknown call %q (want some of %s)", op, strings.Join(priceOps, ","))
			}
			vs = append(vs, &variant{name: "price:" + op, plugin: trimmed,
				config: fmt.Sprintf("%s %d", op, cfg.calls), calls: cfg.calls, ref: ref})
		}
		vs = append(vs, &variant{name: "price:replace@0.2.0", plugin: abi020,
			config: fmt.Sprintf("replace %d", cfg.calls), calls: cfg.calls, ref: ref020})
		untrimmed.ref = ref020
		return vs, nil
	}
	return nil, fmt.Errorf("-set %q: want main, tags or price", cfg.set)
}

// trim writes src to dst without the exports drop and, unless abi is empty, with the SDK's ABI marker
// renamed to abi: what `make filter` does to the shipped builds (filter/internal/wasmtrim).
func trim(src, dst string, drop []string, abi string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	e := wasmexports.Edit{Drop: drop}
	if abi != "" {
		e.Rename = map[string]string{plugin.SDKABIExport: abi}
	}
	if b, err = wasmexports.Rewrite(b, e); err != nil {
		return fmt.Errorf("%s: %w", src, err)
	}
	return os.WriteFile(dst, b, 0o644)
}

// done reports whether every variant served enough requests (and at least three rounds were run).
func done(variants []*variant, requests, rounds int) bool {
	if rounds < 3 {
		return false
	}
	for _, v := range variants {
		if v.total.Requests < requests {
			return false
		}
	}
	return true
}

func last[T any](xs []T) T { return xs[len(xs)-1] }

// rssPath is the RSS after warm-up and after a quarter, half, three quarters and all of the rounds.
func (v *variant) rssPath() string {
	n := len(v.rss)
	return fmt.Sprintf("%.1f / %.1f / %.1f / %.1f / %.1f", mb(v.rssWarm),
		mb(v.rss[(n-1)/4]), mb(v.rss[(n-1)/2]), mb(v.rss[3*(n-1)/4]), mb(v.rss[n-1]))
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func start(ctx context.Context, dir, name string, b envoy.Bootstrap) (*envoy.Process, error) {
	d := filepath.Join(dir, name)
	if err := os.MkdirAll(d, 0o755); err != nil {
		return nil, err
	}
	p, err := envoy.Start(ctx, b, envoy.Options{Dir: d, Concurrency: 1})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return p, nil
}

func report(ctx context.Context, variants []*variant) error {
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	base := variants[0]
	fmt.Fprintln(w, "envoy\trequests\trounds\tmedian req/s\tvs none\tworker us/req (min-max)\tminus none (min-max)\tx none (min-max)\tp50\tp99\terrors\tnon-2xx\texports\texport MB\tRSS warm / 25% / 50% / 75% / end (MB)\t")
	for _, v := range variants {
		t := &v.total
		fmt.Fprintf(w, "%s\t%d\t%d\t%.0f\t%.3f\t%s\t%s\t%s\t%v\t%v\t%d\t%d\t%d\t%.1f\t%s\t\n", v.name, t.Requests, len(v.rounds),
			median(v.rounds), median(v.rounds)/median(base.rounds), spread(v.cpu, "%.1f"), spread(v.cpuDiff, "%+.1f"),
			spread(v.cpuRel, "%.3f"),
			us(t.Percentile(0.5)), us(t.Percentile(0.99)), t.Errors, t.Non2xx,
			v.sink.posts.Load(), mb(v.sink.bytes.Load()), v.rssPath())
	}
	if err := w.Flush(); err != nil {
		return err
	}
	fmt.Println()
	// With the worker saturated, 1/throughput is its time per request; the difference is what the plugin adds.
	for _, v := range variants[1:] {
		fmt.Printf("%-6s vs none: throughput %.3f (%+.1f %%), %+.0f us worker time per request, p50 %+.0f us, p99 %+.0f us, RSS growth %+.1f MB over %d requests\n",
			v.name, median(v.rounds)/median(base.rounds), 100*(median(v.rounds)/median(base.rounds)-1),
			1e6/median(v.rounds)-1e6/median(base.rounds),
			float64(v.total.Percentile(0.5)-base.total.Percentile(0.5))/1e3,
			float64(v.total.Percentile(0.99)-base.total.Percentile(0.99))/1e3,
			mb(last(v.rss)-v.rssWarm), v.total.Requests)
	}
	// Each -build against the filter as built now, round by round (the machine's speed drifts between
	// rounds more than between neighbouring Envoys of one round).
	if tinygo := find(variants, "tinygo"); tinygo != nil {
		for _, v := range variants {
			if v.plugin == "" || v == tinygo || v.tracer || v.config != policy {
				continue
			}
			d := make([]float64, len(v.cpu))
			r := make([]float64, len(v.cpu))
			for i := range v.cpu {
				d[i], r[i] = v.cpu[i]-tinygo.cpu[i], v.cpu[i]/tinygo.cpu[i]
			}
			if v.name != "go" {
				fmt.Printf("%-6s vs tinygo: worker CPU %s us per request, x %s\n", v.name, spread(d, "%+.1f"), spread(r, "%.3f"))
			}
		}
	}
	fmt.Printf("none   RSS growth %+.1f MB over %d requests (Envoy without the filter, for reference)\n",
		mb(last(base.rss)-base.rssWarm), base.total.Requests)
	fmt.Println()
	var errs []error
	for _, v := range variants[2:] {
		if v.plugin != "" {
			stats, err := v.proc.Stats(ctx, `^wasmcustom\.meshtrace_`)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			fmt.Printf("%-6s plugin counters: %v\n", v.name, stats)
		}
	}
	if list := priceList(variants); list != "" {
		fmt.Print(list)
		// What the expressions evaluated to, as the plugin logged it on its first stream.
		for _, v := range variants {
			for _, line := range strings.Split(v.proc.Log(), "\n") {
				if _, msg, ok := strings.Cut(line, "pricelist: "); ok && v.ref != nil {
					fmt.Printf("%-20s logged: %s\n", strings.TrimPrefix(v.name, "price:"), msg)
				}
			}
		}
	}
	// Connections opened to the collector: a handful when the collector reads each export before answering.
	for _, v := range variants {
		if v.sink.posts.Load() == 0 {
			continue
		}
		stats, err := v.proc.Stats(ctx, `^cluster\.(otel-collector|outbound\|4318\|\|.*)\.upstream_cx_total$`)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		fmt.Printf("%-6s export connections: %v\n", v.name, stats)
	}
	return errors.Join(errs...)
}

// find returns the variant called name, or nil.
func find(variants []*variant, name string) *variant {
	for _, v := range variants {
		if v.name == name {
			return v
		}
	}
	return nil
}

// priceList formats the price list: each op's worker CPU over the no-call plugin's in the same round,
// divided by the calls per request (median over rounds, and min..max).
func priceList(variants []*variant) string {
	var b strings.Builder
	for _, v := range variants {
		if v.ref == nil {
			continue
		}
		per := make([]float64, len(v.cpu))
		for i := range v.cpu {
			per[i] = (v.cpu[i] - v.ref.cpu[i]) / float64(v.calls)
		}
		if b.Len() == 0 {
			fmt.Fprintf(&b, "\nprice list: worker CPU per call over the same module making none, median (min..max) over rounds\n")
		}
		fmt.Fprintf(&b, "%-20s %s us  (%d per request, over %s)\n", strings.TrimPrefix(v.name, "price:"),
			spread(per, "%+.2f"), v.calls, v.ref.name)
	}
	return b.String()
}

// spread is the median of xs and, in parentheses, their minimum and maximum.
func spread(xs []float64, format string) string {
	return fmt.Sprintf(format+" ("+format+".."+format+")", median(xs), slices.Min(xs), slices.Max(xs))
}

func us(d time.Duration) string { return fmt.Sprintf("%.0fus", float64(d)/1e3) }

func mb(b int64) float64 { return float64(b) / (1 << 20) }
