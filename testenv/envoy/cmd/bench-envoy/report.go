package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

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
