// Package zipkin turns Zipkin v2 JSON span lists (POST /api/v2/spans, what Envoy's Zipkin tracer and Istio's
// zipkin provider send) into an OTLP ExportTraceServiceRequest, so that the receiver logs and indexes them as
// any OTLP export. The mapping is the OpenTelemetry Collector's zipkin receiver's: localEndpoint.serviceName
// is the resource's service.name, kind and ids map one to one (64-bit trace ids are left-padded), timestamp
// and duration are microseconds, tags become string attributes, annotations events, and an "error" tag sets
// the status to error with its value as the message. Ids that are not hex of the right length become empty,
// so the receiver rejects that span alone (flatten's rules), as it does a bad OTLP span.
package zipkin

import (
	"bytes"
	"cmp"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// ScopeName is the instrumentation scope of the converted spans.
const ScopeName = "zipkin"

// Span is one Zipkin v2 span, as in zipkin2's JSON model.
type Span struct {
	TraceID        string            `json:"traceId"`
	ID             string            `json:"id"`
	ParentID       string            `json:"parentId"`
	Name           string            `json:"name"`
	Kind           string            `json:"kind"`
	Timestamp      uint64            `json:"timestamp"` // microseconds since the epoch
	Duration       uint64            `json:"duration"`  // microseconds
	LocalEndpoint  *Endpoint         `json:"localEndpoint"`
	RemoteEndpoint *Endpoint         `json:"remoteEndpoint"`
	Annotations    []Annotation      `json:"annotations"`
	Tags           map[string]string `json:"tags"`
	Debug          bool              `json:"debug"`
	Shared         bool              `json:"shared"`
}

// Endpoint is a Zipkin endpoint.
type Endpoint struct {
	ServiceName string `json:"serviceName"`
	IPv4        string `json:"ipv4"`
	IPv6        string `json:"ipv6"`
	Port        int64  `json:"port"`
}

// Annotation is a timestamped event of a Zipkin span.
type Annotation struct {
	Timestamp uint64 `json:"timestamp"`
	Value     string `json:"value"`
}

// unknownService names spans without a localEndpoint service, as OpenTelemetry does.
const unknownService = "unknown_service"

// Decode parses a Zipkin v2 JSON list of spans and converts it. A body that is not such a list is an error
// (naming where it broke); field values are never an error (see the package comment).
func Decode(body []byte) (*coltracepb.ExportTraceServiceRequest, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	var spans []Span
	if err := dec.Decode(&spans); err != nil {
		return nil, fmt.Errorf("zipkin: not a Zipkin v2 JSON span list: %w", err)
	}
	if dec.More() {
		return nil, fmt.Errorf("zipkin: unexpected data after the span list at offset %d", dec.InputOffset())
	}
	return Convert(spans), nil
}

// Convert maps spans to one ResourceSpans per local service name, in order of first appearance.
func Convert(spans []Span) *coltracepb.ExportTraceServiceRequest {
	req := &coltracepb.ExportTraceServiceRequest{}
	byService := map[string]*tracepb.ScopeSpans{}
	for i := range spans {
		s := &spans[i]
		svc := unknownService
		if s.LocalEndpoint != nil && s.LocalEndpoint.ServiceName != "" {
			svc = s.LocalEndpoint.ServiceName
		}
		ss := byService[svc]
		if ss == nil {
			ss = &tracepb.ScopeSpans{Scope: &commonpb.InstrumentationScope{Name: ScopeName}}
			byService[svc] = ss
			req.ResourceSpans = append(req.ResourceSpans, &tracepb.ResourceSpans{
				Resource:   &resourcepb.Resource{Attributes: []*commonpb.KeyValue{str("service.name", svc)}},
				ScopeSpans: []*tracepb.ScopeSpans{ss},
			})
		}
		ss.Spans = append(ss.Spans, convert(s))
	}
	return req
}

func convert(s *Span) *tracepb.Span {
	out := &tracepb.Span{
		TraceId:           id(s.TraceID, 16),
		SpanId:            id(s.ID, 8),
		ParentSpanId:      id(s.ParentID, 8),
		Name:              s.Name,
		Kind:              kind(s.Kind),
		StartTimeUnixNano: s.Timestamp * 1000,
		EndTimeUnixNano:   (s.Timestamp + s.Duration) * 1000,
	}
	for _, k := range slices.Sorted(maps.Keys(s.Tags)) {
		v := s.Tags[k]
		if k == "error" {
			out.Status = &tracepb.Status{Code: tracepb.Status_STATUS_CODE_ERROR}
			if v != "" && v != "true" {
				out.Status.Message = v
			}
			continue
		}
		out.Attributes = append(out.Attributes, str(k, v))
	}
	if e := s.RemoteEndpoint; e != nil {
		if e.ServiceName != "" {
			out.Attributes = append(out.Attributes, str("peer.service", e.ServiceName))
		}
		if addr := cmp.Or(e.IPv4, e.IPv6); addr != "" {
			out.Attributes = append(out.Attributes, str("network.peer.address", addr))
			if e.Port > 0 {
				out.Attributes = append(out.Attributes, &commonpb.KeyValue{Key: "network.peer.port",
					Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: e.Port}}})
			}
		}
	}
	for _, a := range s.Annotations {
		out.Events = append(out.Events, &tracepb.Span_Event{TimeUnixNano: a.Timestamp * 1000, Name: a.Value})
	}
	return out
}

// id decodes a hex id of n bytes; a shorter valid one is left-padded with zeros (Zipkin's 64-bit trace ids).
// Anything else decodes to nil, which flatten rejects as a missing id.
func id(s string, n int) []byte {
	if s == "" || len(s) > 2*n || len(s)%2 != 0 {
		return nil
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil
	}
	if len(b) < n {
		b = append(make([]byte, n-len(b)), b...)
	}
	return b
}

func kind(k string) tracepb.Span_SpanKind {
	switch k {
	case "CLIENT":
		return tracepb.Span_SPAN_KIND_CLIENT
	case "SERVER":
		return tracepb.Span_SPAN_KIND_SERVER
	case "PRODUCER":
		return tracepb.Span_SPAN_KIND_PRODUCER
	case "CONSUMER":
		return tracepb.Span_SPAN_KIND_CONSUMER
	}
	return tracepb.Span_SPAN_KIND_INTERNAL
}

func str(k, v string) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
}
