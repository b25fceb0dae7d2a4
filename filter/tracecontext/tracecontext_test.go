package tracecontext

import (
	"strings"
	"testing"
)

func TestParseTraceparent(t *testing.T) {
	const valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	tests := []struct {
		name    string
		in      string
		ok      bool
		sampled bool
	}{
		{"valid sampled", valid, true, true},
		{"valid unsampled", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", true, false},
		{"future version with suffix", "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future", true, true},
		{"future version no suffix", "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", true, true},
		{"version 00 with suffix", valid + "-x", false, false},
		{"future version bad suffix", "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x", false, false},
		{"version ff", "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", false, false},
		{"upper case", "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", false, false},
		{"zero trace id", "00-00000000000000000000000000000000-00f067aa0ba902b7-01", false, false},
		{"zero span id", "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", false, false},
		{"short", valid[:54], false, false},
		{"bad separator", strings.Replace(valid, "-", "_", 1), false, false},
		{"bad flags", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g", false, false},
		{"empty", "", false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, ok := ParseTraceparent(tc.in)
			if ok != tc.ok {
				t.Fatalf("ok = %v, want %v", ok, tc.ok)
			}
			if !ok {
				return
			}
			if c.Sampled() != tc.sampled {
				t.Errorf("sampled = %v, want %v", c.Sampled(), tc.sampled)
			}
			if got := HexTraceID(c.TraceID); got != "4bf92f3577b34da6a3ce929d0e0e4736" {
				t.Errorf("trace id = %s", got)
			}
			if got := string(AppendHexSpanID(nil, c.SpanID)); got != "00f067aa0ba902b7" {
				t.Errorf("span id = %s", got)
			}
		})
	}
}

func TestTraceparentRoundTrip(t *testing.T) {
	const v = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	c, ok := ParseTraceparent(v)
	if !ok {
		t.Fatal("parse failed")
	}
	if got := string(AppendTraceparent(nil, c)); got != v {
		t.Fatalf("format = %q, want %q", got, v)
	}
}

func TestParseB3Single(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		ok      bool
		trace   string
		sampled bool
	}{
		{"full", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90", true, "80f198ee56343ba864fe8b2a57d3eff7", true},
		{"unsampled", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-0", true, "80f198ee56343ba864fe8b2a57d3eff7", false},
		{"debug", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-d", true, "80f198ee56343ba864fe8b2a57d3eff7", true},
		{"no sampling", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1", true, "80f198ee56343ba864fe8b2a57d3eff7", true},
		{"64-bit trace id", "64fe8b2a57d3eff7-e457b5a2e4d86bd1-1", true, "000000000000000064fe8b2a57d3eff7", true},
		{"sampling only", "0", false, "", false},
		{"bad sampling", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-x", false, "", false},
		{"bad parent", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-zz", false, "", false},
		{"short span", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86b-1", false, "", false},
		{"zero span", "80f198ee56343ba864fe8b2a57d3eff7-0000000000000000-1", false, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, ok := ParseB3Single(tc.in)
			if ok != tc.ok {
				t.Fatalf("ok = %v, want %v", ok, tc.ok)
			}
			if !ok {
				return
			}
			if got := HexTraceID(c.TraceID); got != tc.trace {
				t.Errorf("trace = %s, want %s", got, tc.trace)
			}
			if string(AppendHexSpanID(nil, c.SpanID)) != "e457b5a2e4d86bd1" {
				t.Errorf("span = %s", string(AppendHexSpanID(nil, c.SpanID)))
			}
			if c.Sampled() != tc.sampled {
				t.Errorf("sampled = %v", c.Sampled())
			}
		})
	}
}

func TestB3SingleRoundTrip(t *testing.T) {
	const v = "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1"
	c, _ := ParseB3Single(v)
	if got := string(AppendB3Single(nil, c)); got != v {
		t.Fatalf("got %q", got)
	}
}

func TestParseB3Multi(t *testing.T) {
	tests := []struct {
		name                        string
		trace, span, sampled, flags string
		ok, wantSampled             bool
	}{
		{"sampled", "463ac35c9f6413ad48485a3953bb6124", "a2fb4a1d1a96d312", "1", "", true, true},
		{"true", "463ac35c9f6413ad48485a3953bb6124", "a2fb4a1d1a96d312", "true", "", true, true},
		{"unsampled", "463ac35c9f6413ad48485a3953bb6124", "a2fb4a1d1a96d312", "0", "", true, false},
		{"debug wins", "463ac35c9f6413ad48485a3953bb6124", "a2fb4a1d1a96d312", "0", "1", true, true},
		{"64-bit", "48485a3953bb6124", "a2fb4a1d1a96d312", "", "", true, true},
		{"missing span", "463ac35c9f6413ad48485a3953bb6124", "", "1", "", false, false},
		{"bad sampled", "463ac35c9f6413ad48485a3953bb6124", "a2fb4a1d1a96d312", "yes", "", false, false},
		{"bad trace", "463ac35c9f6413ad48485a3953bb612", "a2fb4a1d1a96d312", "1", "", false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, ok := ParseB3Multi(tc.trace, tc.span, tc.sampled, tc.flags)
			if ok != tc.ok {
				t.Fatalf("ok = %v, want %v", ok, tc.ok)
			}
			if ok && c.Sampled() != tc.wantSampled {
				t.Errorf("sampled = %v", c.Sampled())
			}
		})
	}
}

func TestSanitizeTracestate(t *testing.T) {
	tests := []struct{ in, want string }{
		{"rojo=00f067aa0ba902b7,congo=t61rcWkgMzE", "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"},
		{"", ""},
		{strings.Repeat("a", 513), ""},
		{"a=b\n", ""},
		{strings.Repeat("a=b,", 32) + "a=b", ""},
	}
	for _, tc := range tests {
		if got := SanitizeTracestate(tc.in); got != tc.want {
			t.Errorf("SanitizeTracestate(%.20q) = %.20q, want %.20q", tc.in, got, tc.want)
		}
	}
}

func FuzzParseTraceparent(f *testing.F) {
	f.Add("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	f.Add("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x")
	f.Fuzz(func(t *testing.T, v string) {
		c, ok := ParseTraceparent(v)
		if !ok {
			return
		}
		if !c.Valid() {
			t.Fatalf("accepted invalid context from %q", v)
		}
		again, ok := ParseTraceparent(string(AppendTraceparent(nil, c)))
		if !ok || again != c {
			t.Fatalf("round trip of %q: %+v != %+v", v, again, c)
		}
	})
}

func FuzzParseB3(f *testing.F) {
	f.Add("80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90", "", "", "")
	f.Add("", "463ac35c9f6413ad48485a3953bb6124", "a2fb4a1d1a96d312", "1")
	f.Fuzz(func(t *testing.T, single, trace, spanID, sampled string) {
		if c, ok := ParseB3Single(single); ok {
			again, ok := ParseB3Single(string(AppendB3Single(nil, c)))
			if !ok || again != c {
				t.Fatalf("round trip of %q: %+v != %+v", single, again, c)
			}
		}
		if c, ok := ParseB3Multi(trace, spanID, sampled, ""); ok && !c.Valid() {
			t.Fatalf("accepted invalid context")
		}
	})
}
