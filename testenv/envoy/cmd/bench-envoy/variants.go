package main

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"

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
var priceOps = []string{"clock", "property", "log-property", "headers", "header", "replace", "expr", "end-props", "end-expr", "end-concat"}

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
	rounds  []float64 // requests/s per round
	cpu     []float64 // worker CPU per request per round, us
	cpuDiff []float64 // cpu minus the no-filter Envoy's in the same round, us
	cpuRel  []float64 // cpu over the no-filter Envoy's in the same round
	total   load.Result
	rssWarm int64
	rss     []int64 // after each round
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

// plan returns the Envoys of cfg.set, the no-filter Envoy first, building the test plugins into dir.
func plan(cfg config, dir string) ([]*variant, error) {
	paths := []string{cfg.tinygo, cfg.golang}
	for _, b := range cfg.builds {
		paths = append(paths, b.Path)
	}
	for _, p := range paths {
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("%w (run `make filter`)", err)
		}
	}
	none := &variant{name: "none"}
	switch cfg.set {
	case "main", "tags":
		// The price list making no call, as the SDK builds it (every callback exported): what Envoy's
		// Wasm machinery costs a request with a plugin that does nothing.
		pl, err := artifact.BuildPlugin("./testenv/envoy/cmd/bench-envoy/pricelist", dir)
		if err != nil {
			return nil, err
		}
		vs := []*variant{
			none,
			{name: "noop", plugin: pl[0].Path, config: "none 0"}, // the TinyGo build
			{name: "tinygo", plugin: cfg.tinygo, config: policy},
		}
		for _, b := range cfg.builds {
			vs = append(vs, &variant{name: b.Name, plugin: b.Path, config: policy})
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

// find returns the variant called name, or nil.
func find(variants []*variant, name string) *variant {
	for _, v := range variants {
		if v.name == name {
			return v
		}
	}
	return nil
}
