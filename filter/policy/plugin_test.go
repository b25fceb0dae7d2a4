package policy_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log"
	"os"
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

// vm is one started plugin: it answers the header a request ends up with and the plugin's warn logs.
type vm interface {
	request(t *testing.T, headers [][2]string) [][2]string
	warnings() []string
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

func (n nativeVM) warnings() []string { return n.host.GetWarnLogs() }

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
