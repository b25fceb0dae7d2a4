package tracecontext

import (
	"strings"

	"github.com/meshtrace/meshtrace/filter/internal/ascii"
	"github.com/meshtrace/meshtrace/filter/internal/percent"
)

// Limits from the W3C Baggage specification: at most 180 list members and 8192 bytes in total.
const (
	MaxBaggageMembers = 180
	MaxBaggageBytes   = 8192
)

// Member is one baggage list member. Value is percent-decoded; Properties is kept verbatim (without the
// leading ';').
type Member struct {
	Key        string
	Value      string
	Properties string
}

// Baggage is an ordered W3C baggage list.
type Baggage struct {
	Members []Member
}

// ParseBaggage parses a baggage header value. Malformed members are skipped (the rest of the list is
// kept); parsing stops at MaxBaggageMembers members or when the value exceeds MaxBaggageBytes.
func ParseBaggage(v string) Baggage {
	var b Baggage
	b.Parse(v)
	return b
}

// Parse replaces b's members with those of the baggage header value v, as ParseBaggage reads them, reusing
// b's memory.
func (b *Baggage) Parse(v string) {
	clear(b.Members)
	b.Members = b.Members[:0]
	if len(v) > MaxBaggageBytes {
		return
	}
	for len(v) > 0 && len(b.Members) < MaxBaggageMembers {
		var item string
		item, v, _ = strings.Cut(v, ",")
		if m, ok := parseMember(item); ok {
			b.Members = append(b.Members, m)
		}
	}
}

// Get returns the value of the first member named key.
func (b *Baggage) Get(key string) (string, bool) {
	for i := range b.Members {
		if b.Members[i].Key == key {
			return b.Members[i].Value, true
		}
	}
	return "", false
}

// Set replaces the value of member key (dropping its properties) or appends a new member. It reports false,
// leaving b unchanged, if key is not a valid token or the list would exceed the W3C limits.
func (b *Baggage) Set(key, value string) bool {
	if !ascii.IsToken(key) {
		return false
	}
	for i := range b.Members {
		if b.Members[i].Key == key {
			old := b.Members[i]
			b.Members[i] = Member{Key: key, Value: value}
			if b.encodedLen() > MaxBaggageBytes {
				b.Members[i] = old
				return false
			}
			return true
		}
	}
	if len(b.Members) >= MaxBaggageMembers {
		return false
	}
	b.Members = append(b.Members, Member{Key: key, Value: value})
	if b.encodedLen() > MaxBaggageBytes {
		b.Members = b.Members[:len(b.Members)-1]
		return false
	}
	return true
}

// Delete removes every member named key and reports whether there was one.
func (b *Baggage) Delete(key string) bool {
	kept := b.Members[:0]
	for _, m := range b.Members {
		if m.Key != key {
			kept = append(kept, m)
		}
	}
	deleted := len(kept) != len(b.Members)
	clear(b.Members[len(kept):])
	b.Members = kept
	return deleted
}

// AppendTo appends the header form of b, percent-encoding values as needed.
func (b *Baggage) AppendTo(dst []byte) []byte {
	for i, m := range b.Members {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, m.Key...)
		dst = append(dst, '=')
		dst = appendPercentEncoded(dst, m.Value)
		if m.Properties != "" {
			dst = append(dst, ';')
			dst = append(dst, m.Properties...)
		}
	}
	return dst
}

func (b *Baggage) encodedLen() int {
	n := 0
	for i, m := range b.Members {
		if i > 0 {
			n++
		}
		n += len(m.Key) + 1 + len(m.Value)
		for j := 0; j < len(m.Value); j++ {
			if !isBaggageOctet(m.Value[j]) {
				n += 2
			}
		}
		if m.Properties != "" {
			n += 1 + len(m.Properties)
		}
	}
	return n
}

func parseMember(item string) (Member, bool) {
	kv, props, _ := strings.Cut(item, ";")
	key, value, _ := strings.Cut(kv, "=")
	if len(key) == len(kv) { // no '='
		return Member{}, false
	}
	key, value = strings.Trim(key, " \t"), strings.Trim(value, " \t")
	if !ascii.IsToken(key) {
		return Member{}, false
	}
	for i := 0; i < len(value); i++ {
		if !isBaggageOctet(value[i]) && value[i] != '%' {
			return Member{}, false
		}
	}
	decoded, ok := percent.Decode(value, false)
	if !ok {
		return Member{}, false
	}
	return Member{Key: key, Value: decoded, Properties: strings.Trim(props, " \t")}, true
}

// isBaggageOctet reports whether c may appear unencoded in a baggage value (W3C baggage-octet, minus '%',
// which always introduces an escape).
func isBaggageOctet(c byte) bool {
	return c == 0x21 || (c >= 0x23 && c <= 0x2b && c != 0x25) || (c >= 0x2d && c <= 0x3a) ||
		(c >= 0x3c && c <= 0x5b) || (c >= 0x5d && c <= 0x7e)
}

func appendPercentEncoded(dst []byte, v string) []byte {
	const upper = "0123456789ABCDEF"
	for i := 0; i < len(v); i++ {
		c := v[i]
		if isBaggageOctet(c) {
			dst = append(dst, c)
			continue
		}
		dst = append(dst, '%', upper[c>>4], upper[c&0x0f])
	}
	return dst
}
