package record

import (
	"bytes"
	"errors"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	otlp := []byte{0x0a, 0x02, 0x01, 0x02}
	for _, tn := range []string{"", "team-a", "a", "0123456789012345678901234567890123456789012345678901234567890ab"} {
		rec := Encode(tn, otlp)
		if !bytes.Equal(rec, append(Header(tn), otlp...)) {
			t.Errorf("tenant %q: the record is not its header and the request", tn)
		}
		got, body, err := Decode(rec)
		if err != nil || got != tn || !bytes.Equal(body, otlp) {
			t.Errorf("tenant %q: decoded %q % x %v", tn, got, body, err)
		}
		if tn == "" && &rec[0] != &otlp[0] {
			t.Error("the empty tenant's record is not the request itself")
		}
	}
}

func TestDecodeRefuses(t *testing.T) {
	for name, rec := range map[string][]byte{
		"short":        {0x00},
		"version":      {0x00, 0x02, 0x00},
		"cut tenant":   {0x00, 0x01, 0x05, 'a'},
		"bad tenant":   {0x00, 0x01, 0x02, 'A', '_'},
		"empty tenant": {0x00, 0x01, 0x00, 0x0a},
	} {
		if _, _, err := Decode(rec); !errors.Is(err, ErrFormat) {
			t.Errorf("%s: % x decoded (%v)", name, rec, err)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(Encode("team-a", []byte{0x0a, 0x00}))
	f.Add([]byte{0x0a, 0x00})
	f.Add([]byte{0x00, 0x01, 0x07})
	f.Fuzz(func(t *testing.T, rec []byte) {
		tn, body, err := Decode(rec)
		if err != nil {
			return
		}
		if tn != "" {
			if again := Encode(tn, body); !bytes.Equal(again, rec) {
				t.Fatalf("re-encoded % x, was % x", again, rec)
			}
		}
	})
}
