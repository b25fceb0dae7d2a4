package ingestbench

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteTable prints one row per result: throughput, ack latency, refusals, index lag, the last-ack ->
// searchable time and the processes' CPU per span and peak RSS (Meilisearch's in brackets, for the meili
// store).
func WriteTable(w io.Writer, results []Result) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "store\tspans acked\tacked spans/s\tsearchable spans/s\tack p50\tack p99\tack max\t429\t503\tother\tlag p50\tlag p99\tlast ack->searchable\tCPU/span\tpeak RSS\t")
	for _, r := range results {
		cpu, rss := us(r.IndexerCPUPerSpan), mb(r.IndexerPeakRSS)
		if r.Store == Meili {
			cpu += " [+" + us(r.MeiliCPUPerSpan) + "]"
			rss += " [" + mb(r.MeiliPeakRSS) + "]"
		}
		drain := ms(r.LastAckToSearchable)
		if !r.Complete {
			drain = fmt.Sprintf(">%s (%d/%d)", drain, r.Searchable, r.SearchableTarget)
		}
		lag99 := ms(r.LagP99)
		if r.LagMissing > 0 {
			lag99 += fmt.Sprintf(" (%d missing)", r.LagMissing)
		}
		fmt.Fprintf(tw, "%s\t%d/%d\t%.0f\t%.0f\t%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t\n",
			r.Store, r.AckedSpans, r.SentSpans, r.AckedPerSec, r.SearchablePerSec(), ms(r.AckP50), ms(r.AckP99), ms(r.AckMax),
			r.Status429, r.Status503, r.StatusOther+r.TransportErrors, ms(r.LagP50), lag99, drain, cpu, rss)
	}
	return tw.Flush()
}

// Summary is a one-paragraph reading aid for the table: what the columns count.
func Summary(cfg Config, results []Result) string {
	var b strings.Builder
	_ = cfg.defaults()
	var load string
	switch {
	case cfg.Spans > 0 && cfg.Duration > 0:
		load = fmt.Sprintf("%d spans or %v, whichever first", cfg.Spans, cfg.Duration)
	case cfg.Spans > 0:
		load = fmt.Sprintf("%d spans", cfg.Spans)
	default:
		load = fmt.Sprintf("for %v", cfg.Duration)
	}
	rate := "as fast as acks come back"
	if cfg.Rate > 0 {
		rate = fmt.Sprintf("offered at %.0f spans/s", cfg.Rate)
	}
	fmt.Fprintf(&b, "%d exporters, %d spans per OTLP/HTTP protobuf request, %s, %s; index lag sampled on 1 request in %d.\n",
		cfg.Exporters, cfg.BatchSpans, load, rate, cfg.LagEvery)
	b.WriteString("searchable spans/s = acked spans / (load time + last ack->searchable), the end-to-end rate.\n")
	b.WriteString("other = other statuses + transport errors; CPU/span = indexer user+system CPU from the first request until\n" +
		"everything is searchable, per acked span [Meilisearch's in brackets]; peak RSS = VmHWM.\n")
	for _, r := range results {
		fmt.Fprintf(&b, "%s: %d requests (%d failed), load %v, lag samples %d, indexer CPU %v, this process's CPU %v; pipeline %v\n",
			r.Store, r.Requests, r.Failed, r.Load.Round(time.Millisecond), r.LagSamples, r.IndexerCPU.Round(10*time.Millisecond),
			r.ClientCPU.Round(10*time.Millisecond), r.Pipeline)
		if r.MeiliTasks != "" {
			fmt.Fprintf(&b, "%s: Meilisearch tasks: %s\n", r.Store, r.MeiliTasks)
		}
	}
	return b.String()
}

func ms(d time.Duration) string {
	switch {
	case d >= 10*time.Second:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d >= time.Second:
		return fmt.Sprintf("%.2fs", d.Seconds())
	}
	return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
}

func us(d time.Duration) string { return fmt.Sprintf("%.0fus", float64(d)/float64(time.Microsecond)) }

func mb(b int64) string { return fmt.Sprintf("%.0fMB", float64(b)/(1<<20)) }
