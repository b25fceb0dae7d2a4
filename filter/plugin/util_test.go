package plugin

import (
	"strings"
	"testing"
)

func TestSplitHostPort(t *testing.T) {
	tests := []struct {
		in   string
		host string
		port int64
	}{
		{"10.0.0.7:51234", "10.0.0.7", 51234},
		{"shop.example", "shop.example", 0},
		{"shop.example:8080", "shop.example", 8080},
		{"[fd00::5]:9090", "fd00::5", 9090},
		{"[fd00::5]", "fd00::5", 0},
		{"fd00::5", "fd00::5", 0},
		{"[::1", "[::1", 0},
		{"host:99999", "host", 0},
		{"host:x", "host", 0},
		{"", "", 0},
	}
	for _, tc := range tests {
		host, port := splitHostPort(tc.in)
		if host != tc.host || port != tc.port {
			t.Errorf("splitHostPort(%q) = %q, %d; want %q, %d", tc.in, host, port, tc.host, tc.port)
		}
	}
}

func TestResponseFlags(t *testing.T) {
	tests := []struct {
		bits uint64
		want string
	}{
		{0x1, "LH"},
		{0x20 | 0x8000, "UF,URX"},
		{0x100, "NR"},
		{1 << 28, "DR"},
		{1 << 40, "0x10000000000"},
	}
	for _, tc := range tests {
		if got := responseFlags(tc.bits); got != tc.want {
			t.Errorf("responseFlags(%#x) = %q, want %q", tc.bits, got, tc.want)
		}
	}
}

func TestClip(t *testing.T) {
	long := strings.Repeat("a", maxAttrValue-1) + "é"
	if got := clip(long); got != strings.Repeat("a", maxAttrValue-1) {
		t.Errorf("clip cut inside a rune: %q", got[len(got)-3:])
	}
	if got := clip("short"); got != "short" {
		t.Errorf("clip(short) = %q", got)
	}
}

func TestIDSourceDistinct(t *testing.T) {
	var g idSource
	g.seed()
	seen := map[uint64]bool{}
	for i := 0; i < 10000; i++ {
		v := g.next()
		if v == 0 || seen[v] {
			t.Fatalf("id %d repeated or zero after %d ids", v, i)
		}
		seen[v] = true
	}
}
