package policy

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"testing"
)

// hashedTag is a policy fragment with one hashed tag, after the key fields given.
func hashedTag(keyFields string) string {
	return `{` + keyFields + `"tags": [{"attribute": "customer_id", "from": [{"header": "x-customer-id"}], "hash": true}]}`
}

// env is a LookupEnv over a map.
func env(m map[string]string) LookupEnv {
	return func(name string) (string, bool) { v, ok := m[name]; return v, ok }
}

func hmacHex(key, v string) string {
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte(v))
	return hex.EncodeToString(m.Sum(nil))
}

func TestHMACKeyEnv(t *testing.T) {
	p, err := ParseEnv([]byte(hashedTag(`"hmac_key_env": "MESHTRACE_HMAC_KEY", `)), env(map[string]string{"MESHTRACE_HMAC_KEY": "s3cret"}))
	if err != nil {
		t.Fatal(err)
	}
	if p.HMACKeyEnv != "MESHTRACE_HMAC_KEY" || p.HMACKey != "s3cret" || len(p.Warnings) != 0 {
		t.Fatalf("key env %q, key %q, warnings %q", p.HMACKeyEnv, p.HMACKey, p.Warnings)
	}
	if got, ok := p.Tags[0].Transform("1234567"); !ok || got != hmacHex("s3cret", "1234567") {
		t.Fatalf("Transform = %q, %v; want the HMAC under the variable's key", got, ok)
	}
	// A variable named without hashed tags is still read: a missing one is refused the same way.
	if _, err := ParseEnv([]byte(`{"hmac_key_env": "K"}`), env(nil)); err == nil {
		t.Fatal("a missing variable was accepted without hashed tags")
	}
}

// TestHMACKeyEnvFromProcess checks that Parse reads the process environment (in Envoy, the Wasm VM's).
func TestHMACKeyEnvFromProcess(t *testing.T) {
	t.Setenv("MESHTRACE_TEST_HMAC_KEY", "key")
	p, err := Parse([]byte(hashedTag(`"hmac_key_env": "MESHTRACE_TEST_HMAC_KEY", `)))
	if err != nil {
		t.Fatal(err)
	}
	// echo -n 42 | openssl dgst -sha256 -hmac key
	if got, _ := p.Tags[0].Transform("42"); got != "f2991b7ce981d0b5adc5e6a0f31acaeb407bfc21354bbcc31a0c43eaffa83d65" {
		t.Fatalf("Transform(42) = %q", got)
	}
}

func TestHMACKeyEnvErrors(t *testing.T) {
	vars := env(map[string]string{"KEY": "k", "EMPTY": ""})
	tests := []struct {
		name, in, want string
	}{
		{"both fields", hashedTag(`"hmac_key": "k", "hmac_key_env": "KEY", `), `hmac_key_env: cannot be combined with "hmac_key"`},
		{"both fields, inline empty", `{"hmac_key_env": "KEY", "hmac_key": ""}`, `hmac_key_env: cannot be combined with "hmac_key"`},
		{"missing variable", hashedTag(`"hmac_key_env": "NOT_SET", `), `hmac_key_env: environment variable "NOT_SET" is not set in the Wasm VM (Envoy: vm_config.environment_variables; Istio WasmPlugin: spec.vmConfig.env)`},
		{"empty value", hashedTag(`"hmac_key_env": "EMPTY", `), `hmac_key_env: environment variable "EMPTY" is empty`},
		{"empty name", `{"hmac_key_env": ""}`, "hmac_key_env: must not be empty"},
		{"not a name", `{"hmac_key_env": "A=B"}`, "hmac_key_env: must be an environment variable name"},
		{"leading digit", `{"hmac_key_env": "1KEY"}`, "hmac_key_env: must be an environment variable name"},
		{"not a string", `{"hmac_key_env": 1}`, "hmac_key_env: must be a string"},
		{"hash without either", hashedTag(""), `tags[0].hash: requires "hmac_key" or "hmac_key_env"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := ParseEnv([]byte(tc.in), vars)
			var perr *Error
			if !errors.As(err, &perr) {
				t.Fatalf("ParseEnv = %+v, %v; want an *Error", p, err)
			}
			if !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("error = %q, want prefix %q", err, tc.want)
			}
		})
	}
}

func TestInlineKeyWarns(t *testing.T) {
	p, err := ParseEnv([]byte(hashedTag(`"hmac_key": "k", `)), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(p.Warnings, []string{InlineKeyWarning}) || !strings.Contains(InlineKeyWarning, "hmac_key_env") {
		t.Fatalf("warnings = %q", p.Warnings)
	}
	if got, _ := p.Tags[0].Transform("7"); got != hmacHex("k", "7") {
		t.Fatalf("Transform = %q", got)
	}
	// No key, no warning; an empty inline key hashes nothing (refused with hashed tags, see TestHMACKeyEnvErrors).
	for _, in := range []string{`{}`, `{"hmac_key": ""}`, `{"hmac_key_env": "K"}`} {
		p, err := ParseEnv([]byte(in), env(map[string]string{"K": "v"}))
		if err != nil || len(p.Warnings) != 0 {
			t.Errorf("ParseEnv(%s) = warnings %q, %v", in, p.Warnings, err)
		}
	}
}

// TestParseEnvWithoutLookup checks the tools' mode (wasmplugin render): the policy is checked, the
// variable not read, and a hashed tag of such a policy refuses to hash rather than hash under no key.
func TestParseEnvWithoutLookup(t *testing.T) {
	p, err := ParseEnv([]byte(hashedTag(`"hmac_key_env": "NOT_SET_HERE", `)), nil)
	if err != nil {
		t.Fatal(err)
	}
	if p.HMACKeyEnv != "NOT_SET_HERE" || p.HMACKey != "" {
		t.Fatalf("key env %q, key %q", p.HMACKeyEnv, p.HMACKey)
	}
	if _, err := ParseEnv([]byte(hashedTag(`"hmac_key": "k", "hmac_key_env": "K", `)), nil); err == nil {
		t.Fatal("both fields accepted without a lookup")
	}
	defer func() {
		if recover() == nil {
			t.Fatal("a tag of a policy parsed without its key hashed a value")
		}
	}()
	p.Tags[0].Transform("42")
}
