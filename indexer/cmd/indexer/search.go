package main

import (
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshtrace/meshtrace/indexer/api"
)

func newSearchCmd() *cobra.Command {
	var (
		c             client
		target        string
		traces, spans bool
		limit, offset int
		jsonOut       bool
	)
	cmd := &cobra.Command{
		Use:   "search QUERY",
		Short: "Search spans or traces on a running indexer",
		Long: `Search spans or traces with the meshtrace query language, e.g.

  indexer search 'customer_id=123 service=inventory-service trace.duration>500ms since=1h'

Queries naming a trace field (trace.*) return traces, others spans; --traces or --spans overrides.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			params := url.Values{"q": {args[0]}, "limit": {strconv.Itoa(limit)}, "offset": {strconv.Itoa(offset)}}
			switch {
			case traces && spans:
				return fmt.Errorf("--traces and --spans exclude each other")
			case traces:
				target = "traces"
			case spans:
				target = "spans"
			}
			if target != "" {
				params.Set("target", target)
			}
			var res api.SearchResponse
			body, err := c.get(cmd.Context(), "/api/v1/search", params, &res)
			if err != nil {
				return err
			}
			if jsonOut {
				_, err := cmd.OutOrStdout().Write(body)
				return err
			}
			return writeResults(cmd.OutOrStdout(), res)
		},
	}
	f := cmd.Flags()
	addClientFlags(f, &c)
	f.StringVar(&target, "target", "", "spans or traces (default: from the query)")
	f.BoolVar(&traces, "traces", false, "return traces (same as --target traces)")
	f.BoolVar(&spans, "spans", false, "return spans (same as --target spans)")
	f.IntVar(&limit, "limit", 50, "hits to show (at most 1000)")
	f.IntVar(&offset, "offset", 0, "hits to skip")
	f.BoolVar(&jsonOut, "json", false, "print the API's JSON answer")
	return cmd
}

// writeResults prints hits as an aligned table and a count line.
func writeResults(w io.Writer, res api.SearchResponse) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if res.Target == "traces" {
		fmt.Fprintln(tw, "START\tROOT\tSERVICES\tDURATION\tSPANS\tERRORS\tTRACE")
		for _, t := range res.Traces {
			root := strings.TrimSpace(t.RootService + " " + t.RootName)
			if root == "" {
				root = "(root not seen)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\n", timestamp(t.Start), root, strings.Join(t.Services, ","),
				duration(t.Duration), t.SpanCount, t.ErrorCount, t.TraceID)
		}
	} else {
		fmt.Fprintln(tw, "START\tSERVICE\tNAME\tKIND\tDURATION\tSTATUS\tTRACE")
		for _, s := range res.Spans {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", timestamp(s.Start), s.Service, s.Name, s.Kind, duration(s.Duration),
				s.StatusCode, s.TraceID)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	shown := len(res.Spans) + len(res.Traces)
	note := ""
	if res.Partial {
		note = " (scope join limited to the 1000 most recent traces)"
	}
	_, err := fmt.Fprintf(w, "%d of %d %s%s\n", shown, res.Total, res.Target, note)
	return err
}

// timestamp formats unix microseconds as a UTC time with milliseconds.
func timestamp(us int64) string {
	return time.UnixMicro(us).UTC().Format("2006-01-02 15:04:05.000")
}

// duration formats microseconds with a unit and three significant digits or more (e.g. 912ms, 1.25s, 340µs).
func duration(us int64) string {
	d := time.Duration(us) * time.Microsecond
	switch {
	case d >= time.Second:
		return strconv.FormatFloat(d.Seconds(), 'f', 2, 64) + "s"
	case d >= time.Millisecond:
		return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 1, 64) + "ms"
	}
	return strconv.FormatInt(us, 10) + "µs"
}
