// Command bench-envoy measures what the meshtrace filter costs inside Envoy: requests per second and p50/p99
// latency through an Envoy sidecar inbound listener without the filter, with a do-nothing TinyGo plugin
// (package pricelist making no call: the cost of Envoy's Wasm machinery alone), with the filter's TinyGo build and with its Go
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
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/meshtrace/meshtrace/testenv/artifact"
	"github.com/meshtrace/meshtrace/testenv/envoy"
	"github.com/meshtrace/meshtrace/testenv/envoy/load"
)

type config struct {
	tinygo, golang string
	set            string
	only           string
	builds         artifact.BuildFlag
	calls          int
	ops            string
	conns          int
	round, warmup  time.Duration
	requests       int
	maxRounds      int
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
		if _, err := v.proc.WorkerCPU(); err != nil {
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
			cpu0, err := v.proc.WorkerCPU()
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
			cpu1, err := v.proc.WorkerCPU()
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
