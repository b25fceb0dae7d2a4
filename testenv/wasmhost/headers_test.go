package wasmhost

import (
	"slices"
	"testing"
)

func TestSerializedMapRoundTrip(t *testing.T) {
	tests := []struct {
		name  string
		pairs [][2]string
		bytes int
	}{
		{"empty", nil, 4},
		{"one", [][2]string{{":path", "/"}}, 4 + 8 + len(":path") + 1 + len("/") + 1},
		{"empty value and repeated key", [][2]string{{"a", ""}, {"a", "b"}}, 4 + 16 + 2 + 1 + 4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := appendSerialized(nil, tc.pairs)
			if len(b) != tc.bytes {
				t.Errorf("serialized size = %d, want %d", len(b), tc.bytes)
			}
			got, err := appendDeserialized(nil, b)
			if err != nil || !slices.Equal(got, tc.pairs) {
				t.Errorf("round trip = %q, %v", got, err)
			}
		})
	}
}

func TestDeserializeRejectsTruncated(t *testing.T) {
	full := appendSerialized(nil, [][2]string{{"key", "value"}})
	for n := 1; n < len(full); n++ {
		if _, err := appendDeserialized(nil, full[:n]); err == nil {
			t.Errorf("%d of %d bytes accepted", n, len(full))
		}
	}
	// A count that promises more entries than the size table holds.
	if _, err := appendDeserialized(nil, []byte{0xff, 0xff, 0xff, 0xff}); err == nil {
		t.Error("huge count accepted")
	}
}

func TestHeaderMapEdits(t *testing.T) {
	m := headerMap{}
	m.setFrom([][2]string{{"X-A", "1"}, {"x-b", "2"}, {"x-a", "3"}})
	m.replace([]byte("X-a"), "r")
	if want := (headerMap{{"x-a", "r"}, {"x-b", "2"}}); !slices.Equal(m, want) {
		t.Errorf("replace: %q, want %q", m, want)
	}
	m.replace([]byte("x-new"), "n")
	m.add("X-B", "4")
	m.remove([]byte("X-B"))
	if want := (headerMap{{"x-a", "r"}, {"x-new", "n"}}); !slices.Equal(m, want) {
		t.Errorf("add and remove: %q, want %q", m, want)
	}
}

// FuzzDeserializeMap feeds arbitrary guest bytes to the header map decoder: it must never panic, and
// what it accepts must survive a round trip.
func FuzzDeserializeMap(f *testing.F) {
	f.Add(appendSerialized(nil, [][2]string{{":method", "GET"}, {"x", ""}}))
	f.Add([]byte{1, 0, 0, 0, 255, 255, 255, 255, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		pairs, err := appendDeserialized(nil, b)
		if err != nil {
			return
		}
		again, err := appendDeserialized(nil, appendSerialized(nil, pairs))
		if err != nil || !slices.Equal(again, pairs) {
			t.Fatalf("round trip of %q = %q, %v", pairs, again, err)
		}
	})
}
