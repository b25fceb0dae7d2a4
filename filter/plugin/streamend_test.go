package plugin

import (
	"encoding/binary"
	"strings"
	"testing"

	"github.com/meshtrace/meshtrace/filter/span"
)

// pairs encodes key/value pairs as Envoy serializes a CEL map: proxy-wasm pairs.
func pairs(kv ...string) []byte {
	b := binary.LittleEndian.AppendUint32(nil, uint32(len(kv)/2))
	for _, s := range kv {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(s)))
	}
	for _, s := range kv {
		b = append(append(b, s...), 0)
	}
	return b
}

func le64(v uint64) string { return string(binary.LittleEndian.AppendUint64(nil, v)) }

func TestParseEnd(t *testing.T) {
	server, serverKeys := endExprSource(span.KindServer, false)
	_, clientB3Keys := endExprSource(span.KindClient, true)
	if !strings.Contains(server, "source.address") || strings.Contains(server, "upstream.address") {
		t.Fatalf("server expression %q", server)
	}
	tp := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	good := []string{"c", le64(200), "f", le64(0x100), "d", "via_upstream", "k", "inbound|8080||", "s", "10.0.0.7:51234", "t", tp}
	tests := []struct {
		name string
		in   []byte
		keys []string
		want streamEnd
		ok   bool
	}{
		{"server", pairs(good...), serverKeys, streamEnd{code: 200, flags: 0x100, details: "via_upstream",
			cluster: "inbound|8080||", peer: "10.0.0.7:51234", traceparent: tp}, true},
		{"any order", pairs(append(good[6:], good[:6]...)...), serverKeys, streamEnd{code: 200, flags: 0x100,
			details: "via_upstream", cluster: "inbound|8080||", peer: "10.0.0.7:51234", traceparent: tp}, true},
		{"client with b3", pairs("c", le64(503), "f", le64(0), "d", "upstream_reset", "k", "outbound|80||b", "u", "10.0.0.9:80",
			"t", tp, "b", "", "bt", "80f198ee56343ba864fe8b2a57d3eff7", "bs", "e457b5a2e4d86bd1", "bp", "1", "bf", ""),
			clientB3Keys, streamEnd{code: 503, details: "upstream_reset", cluster: "outbound|80||b", upstream: "10.0.0.9:80",
				traceparent: tp, b3TraceID: "80f198ee56343ba864fe8b2a57d3eff7", b3SpanID: "e457b5a2e4d86bd1", b3Sampled: "1"}, true},
		{"empty", nil, serverKeys, streamEnd{}, false},
		{"fewer pairs", pairs(good[:10]...), serverKeys, streamEnd{}, false},
		{"unknown key", pairs(append(good[:10:10], "x", tp)...), serverKeys, streamEnd{}, false},
		{"duplicate key", pairs(append(good[:10:10], "c", le64(1))...), serverKeys, streamEnd{}, false},
		{"integer of 4 bytes", pairs(append([]string{"c", "\xc8\x00\x00\x00"}, good[2:]...)...), serverKeys, streamEnd{}, false},
		{"trailing bytes", append(pairs(good...), 0), serverKeys, streamEnd{}, false},
		{"truncated", pairs(good...)[:60], serverKeys, streamEnd{}, false},
		// An Envoy that serializes CEL maps as a google.protobuf.Struct.
		{"protobuf Struct", []byte("\x0a\x0b\x0a\x01c\x12\x06\x11\x00\x00\x00\x00\x00\x00\x69\x40"), serverKeys, streamEnd{}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseEnd(tc.in, tc.keys)
			if (err == nil) != tc.ok {
				t.Fatalf("parseEnd: err %v, want ok %v", err, tc.ok)
			}
			if tc.ok && got != tc.want {
				t.Errorf("parseEnd = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestEndExprKeys checks that each expression names every key of its map once.
func TestEndExprKeys(t *testing.T) {
	for _, kind := range []span.Kind{span.KindServer, span.KindClient} {
		for _, b3 := range []bool{false, true} {
			src, keys := endExprSource(kind, b3)
			if strings.Count(src, "': ") != len(keys) {
				t.Errorf("kind %v b3 %v: %d entries for %d keys in %s", kind, b3, strings.Count(src, "': "), len(keys), src)
			}
			for _, k := range keys {
				if strings.Count(src, "'"+k+"': ") != 1 {
					t.Errorf("kind %v b3 %v: key %q not once in %s", kind, b3, k, src)
				}
			}
		}
	}
}

// FuzzParseEnd: any bytes are refused or decoded without a panic, and what is accepted holds only the
// expression's keys.
func FuzzParseEnd(f *testing.F) {
	_, keys := endExprSource(span.KindServer, false)
	f.Add(pairs("c", le64(200), "f", le64(0), "d", "via_upstream", "k", "inbound|8080||", "s", "10.0.0.7:1", "t", "x"))
	f.Add(pairs("c", le64(200)))
	f.Add([]byte("\x06\x00\x00\x00\xff\xff\xff\xff"))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := parseEnd(b, keys)
		if err == nil && e.upstream != "" {
			t.Fatalf("accepted a key the server expression has not: %+v", e)
		}
	})
}
