package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/meshtrace/meshtrace/indexer/api"
	"github.com/meshtrace/meshtrace/indexer/document"
)

// keyAttributes are the span attributes the tree shows besides the trace's business keys.
var keyAttributes = []string{
	"http.request.method", "http.route", "url.path", "http.response.status_code", "peer.service",
	"messaging.operation.type", "messaging.destination.name", "server.address",
}

func newTraceCmd() *cobra.Command {
	var (
		c       client
		jsonOut bool
	)
	cmd := &cobra.Command{
		Use:   "trace ID",
		Short: "Print one trace as an indented tree with durations and key attributes",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var res api.TraceResponse
			body, err := c.get(cmd.Context(), "/api/v1/traces/"+args[0], nil, &res)
			if err != nil {
				return err
			}
			if jsonOut {
				_, err := cmd.OutOrStdout().Write(body)
				return err
			}
			return writeTree(cmd.OutOrStdout(), res)
		},
	}
	addClientFlags(cmd.Flags(), &c)
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print the API's JSON answer")
	return cmd
}

// writeTree prints the trace summary, then each span under its parent (spans whose parent was never received
// are printed at the top level), children in start order.
func writeTree(w io.Writer, res api.TraceResponse) error {
	t := res.Trace
	head := fmt.Sprintf("trace %s  %s  %d spans, %d errors", t.TraceID, duration(t.Duration), t.SpanCount, t.ErrorCount)
	if len(t.Keys) > 0 {
		head += "  " + keyList(t.Keys)
	}
	if _, err := fmt.Fprintln(w, head); err != nil {
		return err
	}
	ids := map[string]bool{}
	for _, s := range res.Spans {
		ids[s.SpanID] = true
	}
	children := map[string][]document.Span{}
	for _, s := range res.Spans {
		parent := s.ParentSpanID
		if !ids[parent] {
			parent = ""
		}
		children[parent] = append(children[parent], s)
	}
	for _, list := range children {
		slices.SortStableFunc(list, func(a, b document.Span) int { return int(a.Start - b.Start) })
	}
	attrNames := append(slices.Sorted(maps.Keys(t.Keys)), keyAttributes...)
	var walk func(parent, indent string) error
	walk = func(parent, indent string) error {
		list := children[parent]
		for i, s := range list {
			branch, next := "├─ ", "│  "
			if i == len(list)-1 {
				branch, next = "└─ ", "   "
			}
			if _, err := fmt.Fprintf(w, "%s%s%s\n", indent, branch, spanLine(s, attrNames)); err != nil {
				return err
			}
			if err := walk(s.SpanID, indent+next); err != nil {
				return err
			}
		}
		return nil
	}
	return walk("", "")
}

func spanLine(s document.Span, attrNames []string) string {
	parts := []string{s.Service, s.Name, "[" + s.Kind + "]", duration(s.Duration)}
	if s.Error {
		status := "ERROR"
		if s.StatusMessage != "" {
			status += fmt.Sprintf(" %q", s.StatusMessage)
		}
		parts = append(parts, status)
	}
	for _, k := range attrNames {
		if v, ok := s.Attr[k]; ok {
			parts = append(parts, fmt.Sprintf("%s=%v", k, v))
		}
	}
	return strings.Join(parts, " ")
}

func keyList(keys map[string][]string) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(keys)) {
		parts = append(parts, k+"="+strings.Join(keys[k], "|"))
	}
	return strings.Join(parts, " ")
}
