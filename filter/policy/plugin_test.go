package policy_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/proxytest"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/meshtrace/meshtrace/filter/plugin"
	"github.com/meshtrace/meshtrace/filter/policy"
	"github.com/meshtrace/meshtrace/testenv/artifact"
	"github.com/meshtrace/meshtrace/testenv/wasmhost"
	"github.com/meshtrace/meshtrace/testenv/wasmhost/hosttest"
)

// The key cases run where the plugin reads its policy: the plugin package natively on the SDK's host
// emulator (the environment is the test process's), and the TinyGo and Go builds on the wazero host (the
// environment is the VM's, wasmhost.Config.Env, as Envoy's vm_config.environment_variables gives it).

// keyVar names the variable the cases put the key in; missingVar is never set.
const (
	keyVar     = "MESHTRACE_TEST_HMAC_KEY"
	missingVar = "MESHTRACE_TEST_HMAC_KEY_MISSING"
)

// keyPolicy hashes x-customer-id into customer_id and copies the hash into a request header, where the
// case reads it, after the key fields given.
func keyPolicy(keyFields string) string {
	return `{"direction": "inbound", ` + keyFields + `, "tags": [{"attribute": "customer_id", ` +
		`"from": [{"header": "x-customer-id"}], "hash": true, "envoy_header": "x-meshtrace-customer-id"}]}`
}

// vm is one started plugin: it answers the header a request ends up with, the headers of the export call
// a traced request leads to, and the plugin's warn logs (or all its logs).
type vm interface {
	request(t *testing.T, headers [][2]string) [][2]string
	exportHeaders(t *testing.T) [][2]string
	warnings() []string
	logs() []string
}

// loadFunc starts the plugin with a policy and the VM environment env; the error carries the plugin's
// critical (or, on wazero, warn and error) log lines.
type loadFunc func(t *testing.T, policyJSON string, env map[string]string) (vm, error)

// forEachRunner runs f natively, then on the TinyGo and the Go build.
func forEachRunner(t *testing.T, f func(t *testing.T, load loadFunc)) {
	t.Run("native", func(t *testing.T) { f(t, loadNative) })
	for _, b := range artifact.Builds(t) {
		t.Run(b.Name, func(t *testing.T) {
			m := hosttest.Module(t, b)
			f(t, func(t *testing.T, policyJSON string, env map[string]string) (vm, error) {
				return loadWasm(t, m, policyJSON, env)
			})
		})
	}
}

type nativeVM struct{ host proxytest.HostEmulator }

// loadNative starts the plugin package on the host emulator with env set in the process environment.
func loadNative(t *testing.T, policyJSON string, env map[string]string) (vm, error) {
	if _, ok := os.LookupEnv(missingVar); ok {
		t.Fatalf("%s is set in the test's environment", missingVar)
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
	out, flags := log.Writer(), log.Flags()
	log.SetOutput(io.Discard) // the emulator logs every HTTP callout
	host, reset := proxytest.NewHostEmulator(proxytest.NewEmulatorOption().
		WithVMContext(plugin.NewVMContext()).WithPluginConfiguration([]byte(policyJSON)))
	t.Cleanup(func() { reset(); log.SetOutput(out); log.SetFlags(flags) })
	// See filter/plugin/native_test.go: the emulator has no CEL, and an unregistered foreign function ends
	// the test binary.
	host.RegisterForeignFunction("expr_create", func([]byte) []byte { return []byte{0} })
	if host.StartVM() != types.OnVMStartStatusOK {
		return nil, errors.New("proxy_on_vm_start failed")
	}
	if host.StartPlugin() != types.OnPluginStartStatusOK {
		return nil, errors.New("proxy_on_configure failed: " + strings.Join(host.GetCriticalLogs(), "\n"))
	}
	return nativeVM{host}, nil
}

func (n nativeVM) request(t *testing.T, headers [][2]string) [][2]string {
	id := n.host.InitializeHttpContext()
	if a := n.host.CallOnRequestHeaders(id, headers, true); a != types.ActionContinue {
		t.Fatalf("request headers: action %v", a)
	}
	h := n.host.GetCurrentRequestHeaders(id)
	n.host.CompleteHttpContext(id)
	return h
}

// exportHeaders runs one traced request, ticks, and returns the headers of the one export call the tick
// dispatched, as the host received them.
func (n nativeVM) exportHeaders(t *testing.T) [][2]string {
	before := len(n.host.GetCalloutAttributesFromContext(proxytest.PluginContextID))
	id := n.host.InitializeHttpContext()
	n.host.CallOnRequestHeaders(id, [][2]string{{":method", "GET"}, {":path", "/"}, {":authority", "shop"}}, true)
	n.host.CallOnResponseHeaders(id, [][2]string{{":status", "200"}}, true)
	n.host.CompleteHttpContext(id)
	n.host.Tick()
	calls := n.host.GetCalloutAttributesFromContext(proxytest.PluginContextID)[before:]
	if len(calls) != 1 {
		t.Fatalf("%d export calls after a tick, want 1", len(calls))
	}
	n.host.CallOnHttpCallResponse(calls[0].CalloutID, [][2]string{{":status", "200"}}, nil, nil)
	return calls[0].Headers
}

func (n nativeVM) warnings() []string { return n.host.GetWarnLogs() }

func (n nativeVM) logs() []string {
	return slices.Concat(n.host.GetTraceLogs(), n.host.GetDebugLogs(), n.host.GetInfoLogs(), n.host.GetWarnLogs(),
		n.host.GetErrorLogs(), n.host.GetCriticalLogs())
}

type wasmVM struct{ host *wasmhost.Host }

func loadWasm(t *testing.T, m *wasmhost.Module, policyJSON string, env map[string]string) (vm, error) {
	h, err := m.Load(context.Background(), wasmhost.Config{PluginConfig: []byte(policyJSON), Env: env})
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() {
		if err := h.Close(context.Background()); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return wasmVM{h}, nil
}

func (w wasmVM) request(t *testing.T, headers [][2]string) [][2]string {
	s := w.host.NewHTTPStream(nil)
	if a, err := s.RequestHeaders(headers, true); err != nil || a != wasmhost.ActionContinue {
		t.Fatalf("request headers: %v, %v", a, err)
	}
	h := s.RequestHeadersNow()
	if err := s.Complete(); err != nil {
		t.Fatal(err)
	}
	return h
}

func (w wasmVM) exportHeaders(t *testing.T) [][2]string {
	s := w.host.NewHTTPStream(nil)
	if _, err := s.RequestHeaders([][2]string{{":method", "GET"}, {":path", "/"}, {":authority", "shop"}}, true); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ResponseHeaders([][2]string{{":status", "200"}}, true); err != nil {
		t.Fatal(err)
	}
	if err := s.Complete(); err != nil {
		t.Fatal(err)
	}
	if err := w.host.Tick(); err != nil {
		t.Fatal(err)
	}
	calls := w.host.PendingHTTPCalls()
	if len(calls) != 1 {
		t.Fatalf("%d export calls after a tick, want 1", len(calls))
	}
	if err := w.host.RespondHTTPCall(calls[0].ID, wasmhost.HTTPCallResponse{Headers: [][2]string{{":status", "200"}}}); err != nil {
		t.Fatal(err)
	}
	return calls[0].Headers
}

func (w wasmVM) logs() []string {
	var out []string
	for _, l := range w.host.Logs() {
		out = append(out, l.Message)
	}
	return out
}

func (w wasmVM) warnings() []string {
	var out []string
	for _, l := range w.host.Logs() {
		if l.Level == wasmhost.LogWarn {
			out = append(out, l.Message)
		}
	}
	return out
}

func header(h [][2]string, name string) string {
	for _, kv := range h {
		if kv[0] == name {
			return kv[1]
		}
	}
	return ""
}

func hmacHex(key, v string) string {
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte(v))
	return hex.EncodeToString(m.Sum(nil))
}

// TestPluginHMACKeyEnv checks that the plugin hashes with the key it reads, at configure time, from the
// VM's environment variable hmac_key_env names, and logs no warning about it.
func TestPluginHMACKeyEnv(t *testing.T) {
	forEachRunner(t, func(t *testing.T, load loadFunc) {
		v, err := load(t, keyPolicy(`"hmac_key_env": "`+keyVar+`"`), map[string]string{keyVar: "from-a-secret"})
		if err != nil {
			t.Fatal(err)
		}
		h := v.request(t, [][2]string{{":method", "GET"}, {":path", "/"}, {":authority", "shop"}, {"x-customer-id", "1234567"}})
		if got, want := header(h, "x-meshtrace-customer-id"), hmacHex("from-a-secret", "1234567"); got != want {
			t.Fatalf("hashed customer_id = %q, want %q (headers %v)", got, want, h)
		}
		for _, w := range v.warnings() {
			if strings.Contains(w, "hmac_key") {
				t.Errorf("warning with the key from the environment: %s", w)
			}
		}
	})
}

// TestPluginHMACKeyEnvRefused checks that the plugin refuses to start, naming the field, when the
// variable is missing or empty in the VM or the policy also has an inline key.
func TestPluginHMACKeyEnvRefused(t *testing.T) {
	tests := []struct {
		name, keyFields string
		env             map[string]string
		want            string
	}{
		{"missing variable", `"hmac_key_env": "` + missingVar + `"`, nil,
			`hmac_key_env: environment variable "` + missingVar + `" is not set in the Wasm VM`},
		{"empty value", `"hmac_key_env": "` + keyVar + `"`, map[string]string{keyVar: ""},
			`hmac_key_env: environment variable "` + keyVar + `" is empty`},
		{"both fields", `"hmac_key": "inline", "hmac_key_env": "` + keyVar + `"`, map[string]string{keyVar: "k"},
			`hmac_key_env: cannot be combined with "hmac_key"`},
	}
	forEachRunner(t, func(t *testing.T, load loadFunc) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				_, err := load(t, keyPolicy(tc.keyFields), tc.env)
				if err == nil {
					t.Fatal("plugin started")
				}
				if !strings.Contains(err.Error(), "meshtrace: invalid policy: "+tc.want) {
					t.Fatalf("error %q does not name %q", err, tc.want)
				}
			})
		}
	})
}

// TestPluginInlineKeyWarns checks that an inline hmac_key still works (a laptop demo) and that the plugin
// logs, once, at warn level, that the key is readable by whoever reads its configuration.
func TestPluginInlineKeyWarns(t *testing.T) {
	forEachRunner(t, func(t *testing.T, load loadFunc) {
		v, err := load(t, keyPolicy(`"hmac_key": "demo-only-key"`), nil)
		if err != nil {
			t.Fatal(err)
		}
		h := v.request(t, [][2]string{{":method", "GET"}, {":path", "/"}, {":authority", "shop"}, {"x-customer-id", "42"}})
		if got, want := header(h, "x-meshtrace-customer-id"), hmacHex("demo-only-key", "42"); got != want {
			t.Fatalf("hashed customer_id = %q, want %q", got, want)
		}
		want := "meshtrace: policy: " + policy.InlineKeyWarning
		n := 0
		for _, w := range v.warnings() {
			if w == want {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("%d warnings %q, want 1: %q", n, want, v.warnings())
		}
	})
}

// tokenVar names the variable the token cases put the ingest token in.
const tokenVar = "MESHTRACE_TEST_INGEST_TOKEN"

// tokenPolicy exports to cluster "otlp" with the export fields given.
func tokenPolicy(exportFields string) string {
	return `{"direction": "inbound", "export": {"cluster": "otlp", "authority": "indexer.test"` + exportFields + `}}`
}

// TestPluginIngestToken checks that every export call carries "authorization: Bearer <token>" with the
// token read, at configure time, from the VM's environment variable export.token_env names, that no log
// line holds the token, and that without token_env the call has no authorization header.
func TestPluginIngestToken(t *testing.T) {
	const token = "ingest-7f3a9c0d2e1b"
	forEachRunner(t, func(t *testing.T, load loadFunc) {
		t.Run("token_env", func(t *testing.T) {
			// With a hashed tag whose key comes from the environment too: both variables are read.
			pol := `{"direction": "inbound", "hmac_key_env": "` + keyVar + `", "export": {"cluster": "otlp", "token_env": "` + tokenVar + `"}, ` +
				`"tags": [{"attribute": "customer_id", "from": [{"header": "x-customer-id"}], "hash": true}]}`
			v, err := load(t, pol, map[string]string{tokenVar: token, keyVar: "k"})
			if err != nil {
				t.Fatal(err)
			}
			for i := range 2 { // every call, not only the first
				h := v.exportHeaders(t)
				if got := header(h, "authorization"); got != "Bearer "+token {
					t.Fatalf("export call %d: authorization %q, want the bearer token (headers %v)", i, got, h)
				}
				if got := header(h, ":path"); got != "/v1/traces" {
					t.Fatalf("export call %d: :path %q", i, got)
				}
			}
			for _, l := range v.logs() {
				if strings.Contains(l, token) {
					t.Errorf("a log line holds the token: %s", l)
				}
			}
		})
		t.Run("no token_env", func(t *testing.T) {
			v, err := load(t, tokenPolicy(""), map[string]string{tokenVar: token})
			if err != nil {
				t.Fatal(err)
			}
			h := v.exportHeaders(t)
			for _, kv := range h {
				if strings.EqualFold(kv[0], "authorization") {
					t.Fatalf("export call without token_env has %s: %s", kv[0], kv[1])
				}
			}
			if got := header(h, ":authority"); got != "indexer.test" {
				t.Fatalf(":authority %q (headers %v)", got, h)
			}
		})
	})
}

// TestPluginIngestTokenRefused checks that the plugin refuses to start, naming export.token_env and never
// the token, when the variable is missing, empty or not a bearer token, or its name is invalid.
func TestPluginIngestTokenRefused(t *testing.T) {
	const secret = "ingest-secret-9e8d"
	tests := []struct {
		name, exportFields string
		env                map[string]string
		want               string
	}{
		{"missing variable", `, "token_env": "` + missingVar + `"`, nil,
			`export.token_env: environment variable "` + missingVar + `" is not set in the Wasm VM`},
		{"empty value", `, "token_env": "` + tokenVar + `"`, map[string]string{tokenVar: ""},
			`export.token_env: environment variable "` + tokenVar + `" is empty`},
		{"trailing newline", `, "token_env": "` + tokenVar + `"`, map[string]string{tokenVar: secret + "\n"},
			`export.token_env: environment variable "` + tokenVar + `" holds a character a bearer token cannot have`},
		{"invalid name", `, "token_env": "MESHTRACE-TOKEN"`, map[string]string{tokenVar: secret},
			`export.token_env: must be an environment variable name`},
	}
	forEachRunner(t, func(t *testing.T, load loadFunc) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				_, err := load(t, tokenPolicy(tc.exportFields), tc.env)
				if err == nil {
					t.Fatal("plugin started")
				}
				if !strings.Contains(err.Error(), "meshtrace: invalid policy: "+tc.want) {
					t.Fatalf("error %q does not name %q", err, tc.want)
				}
				if strings.Contains(err.Error(), secret) {
					t.Fatalf("error quotes the token: %q", err)
				}
			})
		}
	})
}

// TestTinyGoBuildLinksNoLibcMalloc checks that the TinyGo build has no wasi-libc allocator: built with
// -tags custommalloc, any libc call that allocates (getenv, through TinyGo's os.LookupEnv, did) links
// dlmalloc, whose sbrk takes pages of the linear memory TinyGo's heap owns, and the two heaps corrupt each
// other a few requests later (see env_tinygo.go). The module's name section names every function.
func TestTinyGoBuildLinksNoLibcMalloc(t *testing.T) {
	for _, b := range artifact.Builds(t) {
		if b.Name != "tinygo" {
			continue
		}
		wasm, err := os.ReadFile(b.Path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(wasm, []byte("proxy_on_configure")) {
			t.Fatalf("%s: no proxy_on_configure: not the filter?", b.Path)
		}
		for _, fn := range []string{"dlmalloc", "sbrk", "__wasilibc_initialize_environ"} {
			if bytes.Contains(wasm, []byte(fn)) {
				t.Errorf("%s links wasi-libc's %s: something calls libc's malloc", b.Path, fn)
			}
		}
	}
}
