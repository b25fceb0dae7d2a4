package api

import (
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/indexer/document"
)

// kafkaSpans is a producer in orders-api and its consumer in service-b, in one trace.
func kafkaSpans(traceID string, ago time.Duration) []document.Span {
	start := now.Add(-ago).UnixMicro()
	attr := map[string]any{"messaging.system": "kafka", "messaging.destination.name": "orders"}
	p := document.Span{ID: traceID + "-0000000000000001", TraceID: traceID, SpanID: "0000000000000001", Name: "send orders",
		Kind: "producer", Service: "orders-api", Start: start, End: start + 10, Duration: 10, StatusCode: "unset", Attr: attr}
	c := document.Span{ID: traceID + "-0000000000000002", TraceID: traceID, SpanID: "0000000000000002", ParentSpanID: p.SpanID,
		Name: "process orders", Kind: "consumer", Service: "service-b", Start: start + 20, End: start + 50, Duration: 30,
		StatusCode: "unset", Attr: attr}
	return []document.Span{p, c}
}

// TestJaegerDependencies asks for the service graph as Grafana's Jaeger data source and the Jaeger UI do:
// endTs and lookback in milliseconds.
func TestJaegerDependencies(t *testing.T) {
	srv := serveTraces(t, [][]document.Span{
		shopSpans(slowTrace, 10*time.Minute, 900*time.Millisecond, "123"),
		shopSpans(fastTrace, 20*time.Minute, 20*time.Millisecond, "456"),
		shopSpans("0000000000000000000000000000abc3", 3*time.Hour, 20*time.Millisecond, "456"),
		kafkaSpans("0000000000000000000000000000abc4", 5*time.Minute),
	})

	ms := func(d time.Duration) int64 { return d.Milliseconds() }
	endTs := now.UnixMilli()
	type dep = JaegerDependency
	for _, tt := range []struct {
		name  string
		query string
		want  []dep
	}{
		{"last hour", fmt.Sprintf("endTs=%d&lookback=%d", endTs, ms(time.Hour)), []dep{
			{Parent: "checkout", Child: "inventory-service", CallCount: 2}, {Parent: "gateway", Child: "checkout", CallCount: 2},
			{Parent: "orders-api", Child: "service-b", CallCount: 1}, {Parent: "orders-api", Child: "topic:orders", CallCount: 1},
			{Parent: "topic:orders", Child: "service-b", CallCount: 1}}},
		{"last 15 minutes", fmt.Sprintf("endTs=%d&lookback=%d", endTs, ms(15*time.Minute)), []dep{
			{Parent: "checkout", Child: "inventory-service", CallCount: 1}, {Parent: "gateway", Child: "checkout", CallCount: 1},
			{Parent: "orders-api", Child: "service-b", CallCount: 1}, {Parent: "orders-api", Child: "topic:orders", CallCount: 1},
			{Parent: "topic:orders", Child: "service-b", CallCount: 1}}},
		{"a window in the past", fmt.Sprintf("endTs=%d&lookback=%d", now.Add(-15*time.Minute).UnixMilli(), ms(10*time.Minute)), []dep{
			{Parent: "checkout", Child: "inventory-service", CallCount: 1}, {Parent: "gateway", Child: "checkout", CallCount: 1}}},
		{"defaults: now and 24 hours", "", []dep{
			{Parent: "checkout", Child: "inventory-service", CallCount: 3}, {Parent: "gateway", Child: "checkout", CallCount: 3},
			{Parent: "orders-api", Child: "service-b", CallCount: 1}, {Parent: "orders-api", Child: "topic:orders", CallCount: 1},
			{Parent: "topic:orders", Child: "service-b", CallCount: 1}}},
		{"no trace in the window", fmt.Sprintf("endTs=%d&lookback=%d", now.Add(-5*time.Hour).UnixMilli(), ms(time.Hour)), []dep{}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var resp struct {
				Data   []dep         `json:"data"`
				Errors []jaegerError `json:"errors"`
			}
			get(t, srv, "/api/dependencies?"+tt.query, http.StatusOK, &resp)
			if resp.Data == nil || !reflect.DeepEqual(resp.Data, tt.want) || resp.Errors != nil {
				t.Errorf("data %+v, errors %v; want %+v", resp.Data, resp.Errors, tt.want)
			}
		})
	}

	t.Run("wire format", func(t *testing.T) {
		res, err := http.Get(fmt.Sprintf("%s/api/dependencies?endTs=%d&lookback=%d", srv.URL, now.Add(-15*time.Minute).UnixMilli(), ms(10*time.Minute)))
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		want := `{"data":[{"parent":"checkout","child":"inventory-service","callCount":1},{"parent":"gateway","child":"checkout","callCount":1}],`
		if !strings.HasPrefix(string(body), want) || res.Header.Get("Content-Type") != "application/json" {
			t.Errorf("body %s (%s), want it to start with %s", body, res.Header.Get("Content-Type"), want)
		}
	})

	for _, bad := range []string{"endTs=yesterday", "lookback=1h", "lookback=-5"} {
		t.Run("bad "+bad, func(t *testing.T) {
			var resp jaegerResponse
			get(t, srv, "/api/dependencies?"+bad, http.StatusBadRequest, &resp)
			if len(resp.Errors) != 1 || resp.Errors[0].Code != http.StatusBadRequest || resp.Data != nil {
				t.Errorf("response %+v, want one 400 error and no data", resp)
			}
		})
	}
}
