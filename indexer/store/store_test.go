package store

import (
	"errors"
	"strings"
	"testing"
)

func TestRequestPageSize(t *testing.T) {
	tests := []struct {
		limit, offset int
		want          int
		bad           bool
	}{
		{0, 0, DefaultLimit, false},
		{1, 0, 1, false},
		{MaxLimit, 10, MaxLimit, false},
		{MaxLimit + 1, 0, 0, true},
		{-1, 0, 0, true},
		{10, -1, 0, true},
	}
	for _, tc := range tests {
		got, err := Request{Limit: tc.limit, Offset: tc.offset}.PageSize()
		if tc.bad {
			if !errors.Is(err, ErrBadRequest) {
				t.Errorf("limit %d offset %d: error %v, want ErrBadRequest", tc.limit, tc.offset, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("limit %d offset %d: %d, %v; want %d", tc.limit, tc.offset, got, err, tc.want)
		}
	}
}

func TestCheckID(t *testing.T) {
	tests := []struct {
		id string
		ok bool
	}{
		{"4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7", true},
		{"A-z_09", true},
		{strings.Repeat("a", 511), true},
		{strings.Repeat("a", 512), false},
		{"", false},
		{"has space", false},
		{"dot.ted", false},
		{"ünicode", false},
	}
	for _, tc := range tests {
		err := CheckID(tc.id)
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrBadRequest)) {
			t.Errorf("CheckID(%.20q) = %v, want ok=%v", tc.id, err, tc.ok)
		}
	}
}

func TestCheckFacet(t *testing.T) {
	tests := []struct {
		index Index
		field string
		limit int
		want  int
		bad   bool
	}{
		{Spans, "service", 0, DefaultFacetLimit, false},
		{Spans, "name", 5, 5, false},
		{Spans, "kind", MaxFacetValues, MaxFacetValues, false},
		{Spans, "status_code", 1, 1, false},
		{Spans, "attr.customer_id", 0, DefaultFacetLimit, false},
		{Spans, "attr.http.response.status_code", 0, DefaultFacetLimit, false},
		{Spans, "resource.k8s.namespace.name", 0, DefaultFacetLimit, false},
		{Traces, "edges", 0, DefaultFacetLimit, false},
		{Traces, "services", 0, DefaultFacetLimit, false},
		{Traces, "root_service", 0, DefaultFacetLimit, false},
		{Spans, "attr.", 0, 0, true},
		{Spans, "attr.*", 0, 0, true},
		{Spans, "resource.k8s.*", 0, 0, true},
		{Spans, "trace_id", 0, 0, true},
		{Spans, "duration", 0, 0, true},
		{Spans, "customer_id", 0, 0, true}, // a document path, not the query language's shorthand
		{Spans, "edges", 0, 0, true},
		{Traces, "service", 0, 0, true},
		{Traces, "attr.customer_id", 0, 0, true},
		{Spans, "service", MaxFacetValues + 1, 0, true},
		{Spans, "service", -1, 0, true},
	}
	for _, tc := range tests {
		got, err := CheckFacet(tc.index, tc.field, tc.limit)
		if tc.bad {
			if !errors.Is(err, ErrBadRequest) {
				t.Errorf("CheckFacet(%s, %q, %d): err = %v, want ErrBadRequest", tc.index, tc.field, tc.limit, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("CheckFacet(%s, %q, %d) = %d, %v; want %d", tc.index, tc.field, tc.limit, got, err, tc.want)
		}
	}
}
