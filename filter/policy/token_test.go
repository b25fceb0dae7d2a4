package policy

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestTokenEnv(t *testing.T) {
	p, err := ParseEnv([]byte(`{"export": {"token_env": "MESHTRACE_INGEST_TOKEN"}}`), env(map[string]string{"MESHTRACE_INGEST_TOKEN": "tok-A1.b_c~d+e/f="}))
	if err != nil {
		t.Fatal(err)
	}
	if p.Export.TokenEnv != "MESHTRACE_INGEST_TOKEN" || p.Export.Token != "tok-A1.b_c~d+e/f=" || len(p.Warnings) != 0 {
		t.Fatalf("token env %q, token %q, warnings %q", p.Export.TokenEnv, p.Export.Token, p.Warnings)
	}
	// The other export settings keep their defaults.
	if p.Export.Cluster != DefaultCluster || p.Export.Path != DefaultPath {
		t.Fatalf("export %+v", p.Export)
	}
	// No token_env: no token, nothing read.
	p, err = ParseEnv([]byte(`{"export": {"cluster": "c"}}`), func(string) (string, bool) { t.Fatal("read the environment"); return "", false })
	if err != nil || p.Export.Token != "" || p.Export.TokenEnv != "" {
		t.Fatalf("without token_env: %+v, %v", p.Export, err)
	}
}

// TestTokenEnvFromProcess checks that Parse reads the process environment (in Envoy, the Wasm VM's).
func TestTokenEnvFromProcess(t *testing.T) {
	t.Setenv("MESHTRACE_TEST_INGEST_TOKEN", "from-process")
	p, err := Parse([]byte(`{"export": {"token_env": "MESHTRACE_TEST_INGEST_TOKEN"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if p.Export.Token != "from-process" {
		t.Fatalf("token %q", p.Export.Token)
	}
}

func TestTokenEnvErrors(t *testing.T) {
	const secret = "s3cret-value"
	vars := env(map[string]string{"EMPTY": "", "SPACE": secret + " x", "NEWLINE": secret + "\n", "UTF8": secret + "é"})
	tests := []struct {
		name, in, want string
	}{
		{"missing variable", `{"export": {"token_env": "NOT_SET"}}`, `export.token_env: environment variable "NOT_SET" is not set in the Wasm VM (Envoy: vm_config.environment_variables; Istio WasmPlugin: spec.vmConfig.env)`},
		{"empty value", `{"export": {"token_env": "EMPTY"}}`, `export.token_env: environment variable "EMPTY" is empty`},
		{"space", `{"export": {"token_env": "SPACE"}}`, `export.token_env: environment variable "SPACE" holds a character a bearer token cannot have`},
		{"trailing newline", `{"export": {"token_env": "NEWLINE"}}`, `export.token_env: environment variable "NEWLINE" holds a character a bearer token cannot have`},
		{"non-ASCII", `{"export": {"token_env": "UTF8"}}`, `export.token_env: environment variable "UTF8" holds a character`},
		{"empty name", `{"export": {"token_env": ""}}`, "export.token_env: must not be empty"},
		{"not a name", `{"export": {"token_env": "A-B"}}`, "export.token_env: must be an environment variable name"},
		{"leading digit", `{"export": {"token_env": "1TOKEN"}}`, "export.token_env: must be an environment variable name"},
		{"not a string", `{"export": {"token_env": true}}`, "export.token_env: must be a string"},
		{"inline token", `{"export": {"token": "abc"}}`, "export.token: unknown field"},
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
			if strings.Contains(err.Error(), secret) {
				t.Fatalf("error quotes the token: %q", err)
			}
		})
	}
}

// TestTokenEnvWithoutLookup checks the tools' mode: the name is checked, the variable not read.
func TestTokenEnvWithoutLookup(t *testing.T) {
	p, err := ParseEnv([]byte(`{"export": {"token_env": "NOT_SET_HERE"}}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if p.Export.TokenEnv != "NOT_SET_HERE" || p.Export.Token != "" {
		t.Fatalf("token env %q, token %q", p.Export.TokenEnv, p.Export.Token)
	}
	if _, err := ParseEnv([]byte(`{"export": {"token_env": "1X"}}`), nil); err == nil {
		t.Fatal("an invalid name accepted without a lookup")
	}
}

func TestEnvVars(t *testing.T) {
	tests := []struct {
		in   string
		want []EnvVar
	}{
		{`{}`, nil},
		{`{"hmac_key": "k"}`, nil},
		{`{"hmac_key_env": "K"}`, []EnvVar{{"K", "hmac_key_env", "HMAC key"}}},
		{`{"export": {"token_env": "T"}}`, []EnvVar{{"T", "export.token_env", "ingest token"}}},
		{`{"export": {"token_env": "T"}, "hmac_key_env": "K"}`, []EnvVar{{"K", "hmac_key_env", "HMAC key"}, {"T", "export.token_env", "ingest token"}}},
	}
	for _, tc := range tests {
		p, err := ParseEnv([]byte(tc.in), nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := p.EnvVars(); !slices.Equal(got, tc.want) {
			t.Errorf("EnvVars(%s) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

// TestFindEnv checks the parse of WASI environ_get's buffer, which the TinyGo build reads itself.
func TestFindEnv(t *testing.T) {
	buf := []byte("A=1\x00AB=2\x00EMPTY=\x00EQ=x=y\x00A=dup\x00LAST=z\x00")
	for name, want := range map[string]string{"A": "1", "AB": "2", "EMPTY": "", "EQ": "x=y", "LAST": "z"} {
		if got, ok := findEnv(buf, name); !ok || got != want {
			t.Errorf("findEnv(%s) = %q, %v; want %q", name, got, ok, want)
		}
	}
	for _, name := range []string{"B", "ABC", "", "1", "LAST=z"} {
		if got, ok := findEnv(buf, name); ok {
			t.Errorf("findEnv(%q) = %q, found", name, got)
		}
	}
	if _, ok := findEnv(nil, "A"); ok {
		t.Error("found in an empty environment")
	}
	if got, ok := findEnv([]byte("A=no-nul"), "A"); !ok || got != "no-nul" {
		t.Errorf("unterminated last entry: %q, %v", got, ok)
	}
}
