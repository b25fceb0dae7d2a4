package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/testenv/artifact"
	"github.com/meshtrace/meshtrace/testenv/envoy"
)

// TestBadPolicyRejected checks that Envoy refuses a listener whose plugin rejects its policy, and that the
// plugin's reason, naming the field, is in Envoy's log.
func TestBadPolicyRejected(t *testing.T) {
	tests := []struct {
		name, policy, want string
	}{
		{"hash without key", `{"tags": [{"attribute": "customer_id", "from": [{"header": "x-customer-id"}], "hash": true}]}`,
			`tags[0].hash: requires "hmac_key"`},
		{"unknown field", `{"tags": [{"attribute": "customer_id", "frm": [{"header": "x-customer-id"}]}]}`,
			`tags[0].frm: unknown field`},
	}
	for _, build := range artifact.Builds(t) {
		t.Run(build.Name, func(t *testing.T) {
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					dir := t.TempDir()
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
					defer cancel()
					p, err := envoy.Start(ctx, envoy.Bootstrap{
						Listeners: []envoy.Listener{{
							Name: "inbound", Direction: envoy.Inbound,
							Direct: &envoy.DirectResponse{Status: 200},
							Wasm:   &envoy.Wasm{Name: "meshtrace", VMID: "meshtrace", File: build.Path, Config: tt.policy},
						}},
					}, envoy.Options{Dir: dir})
					if err == nil {
						p.Close()
						t.Fatal("Envoy accepted the listener")
					}
					log, _ := os.ReadFile(filepath.Join(dir, envoy.LogFile))
					if !strings.Contains(string(log), tt.want) {
						t.Errorf("Envoy's log does not contain %q:\n%s", tt.want, log)
					}
					if !strings.Contains(string(log), "Unable to create Wasm plugin meshtrace") {
						t.Errorf("Envoy did not reject the plugin config:\n%s", log)
					}
				})
			}
		})
	}
}
