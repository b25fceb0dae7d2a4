package policy

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"regexp"
	"unicode/utf8"
)

// Redacted replaces the value of a tag with "redact": true.
const Redacted = "[REDACTED]"

// Tag is one rule: read a value from the first source that has one, transform it, and record it as a span
// attribute (optionally also in the outgoing baggage and in a request header for Envoy's own spans).
type Tag struct {
	Attribute   string
	From        []Source
	Regex       *regexp.Regexp // keep the first capture group (or the whole match); no match = no value
	Lowercase   bool
	MaxLength   int // in bytes, cut at a UTF-8 boundary; 0 = unlimited
	Hash        bool
	Redact      bool
	Default     string // recorded when no source yields a value; empty = record nothing
	Propagate   bool   // write the final value to the outgoing baggage under Attribute
	EnvoyHeader string // copy the final value into this request header

	hmacKey []byte
	mac     hash.Hash // HMAC state, created on first use and reset for each value
	sum     [sha256.Size]byte
	scratch []byte // the value being hashed, then its hex digest
}

// Transform applies the rule's transforms to a raw source value, in order: lowercase, regex, max_length,
// then hash (hex HMAC-SHA256 with the policy's hmac_key) or redact. It reports false when the regex does
// not match, so the caller can try the next source. It is not safe for concurrent use.
func (t *Tag) Transform(raw string) (string, bool) {
	v := raw
	if t.Lowercase {
		v = lower(v)
	}
	if t.Regex != nil {
		m := t.Regex.FindStringSubmatchIndex(v)
		if m == nil {
			return "", false
		}
		if len(m) >= 4 && m[2] >= 0 {
			v = v[m[2]:m[3]]
		} else {
			v = v[m[0]:m[1]]
		}
	}
	if t.MaxLength > 0 && len(v) > t.MaxLength {
		n := t.MaxLength
		for n > 0 && !utf8.RuneStart(v[n]) {
			n--
		}
		v = v[:n]
	}
	switch {
	case t.Hash:
		return t.hmacHex(v), true
	case t.Redact:
		return Redacted, true
	}
	return v, true
}

// hmacHex returns the hex HMAC-SHA256 of v. A Tag is used by one goroutine at a time (a proxy-wasm VM is
// single-threaded), so the HMAC state is kept and reset rather than rebuilt for every value.
func (t *Tag) hmacHex(v string) string {
	if t.mac == nil {
		if len(t.hmacKey) == 0 {
			panic("policy: tag " + t.Attribute + " hashes with no key: its policy was parsed without reading hmac_key_env (ParseEnv with a nil lookup)")
		}
		t.mac = hmac.New(sha256.New, t.hmacKey)
	}
	t.mac.Reset()
	t.scratch = append(t.scratch[:0], v...)
	t.mac.Write(t.scratch)
	t.scratch = hex.AppendEncode(t.scratch[:0], t.mac.Sum(t.sum[:0]))
	return string(t.scratch)
}
