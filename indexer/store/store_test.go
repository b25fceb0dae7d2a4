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
