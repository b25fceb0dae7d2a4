package deploy_test

import (
	"net"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/meshtrace/meshtrace/wasmplugin/manifest/manifesttest"
)

// TestIndexerConfiguration checks the indexer containers against the real `indexer serve`: the command is
// serve, every MESHTRACE_* variable they get names a serve flag, and every *_ADDR listens on a declared
// container port.
func TestIndexerConfiguration(t *testing.T) {
	cmd := exec.Command("go", "run", "../indexer/cmd/indexer", "serve", "--help")
	cmd.Stderr = os.Stderr
	help, err := cmd.Output()
	if err != nil {
		t.Fatalf("indexer serve --help: %v", err)
	}
	flags := map[string]bool{}
	for _, m := range regexp.MustCompile(`--([a-z0-9][a-z0-9-]*)`).FindAllStringSubmatch(string(help), -1) {
		flags["MESHTRACE_"+strings.ToUpper(strings.ReplaceAll(m[1], "-", "_"))] = true
	}
	if !flags["MESHTRACE_MEILI_URL"] {
		t.Fatalf("help lists no --meili-url; flags seen: %v", flags)
	}

	v := manifesttest.Validator(t)
	for _, dir := range []string{"base", "overlays/scale-out", "overlays/tenants"} {
		t.Run(dir, func(t *testing.T) {
			c := newCluster(t, build(t, v, dir))
			found := false
			for _, w := range c.workloads {
				for _, ctr := range w.template.Spec.Containers {
					if ctr.Name != "indexer" {
						continue
					}
					found = true
					if len(ctr.Args) == 0 || ctr.Args[0] != "serve" {
						t.Errorf("%s: args %v, want serve", w.id, ctr.Args)
					}
					for name, value := range c.indexerEnv(t, w.ns, ctr) {
						if !strings.HasPrefix(name, "MESHTRACE_") {
							continue
						}
						if !flags[name] {
							t.Errorf("%s: %s is no `indexer serve` flag", w.id, name)
						}
						if strings.HasSuffix(name, "_ADDR") {
							_, port, err := net.SplitHostPort(value)
							if err != nil || !hasPort(ctr, port) {
								t.Errorf("%s: %s=%q does not listen on a container port", w.id, name, value)
							}
						}
					}
				}
			}
			if !found {
				t.Fatal("no indexer container")
			}
		})
	}
}

// indexerEnv returns the container's environment: ConfigMaps from envFrom, then env (values from secrets
// as "<secret>").
func (c *cluster) indexerEnv(t *testing.T, ns string, ctr corev1.Container) map[string]string {
	env := map[string]string{}
	for _, from := range ctr.EnvFrom {
		if from.ConfigMapRef == nil {
			continue
		}
		for _, o := range c.objs {
			if o.Kind == "ConfigMap" && o.Namespace == ns && o.Name == from.ConfigMapRef.Name {
				var cm corev1.ConfigMap
				decode(t, o, &cm)
				for k, v := range cm.Data {
					env[k] = v
				}
			}
		}
	}
	for _, e := range ctr.Env {
		if e.ValueFrom != nil {
			env[e.Name] = "<secret>"
		} else {
			env[e.Name] = e.Value
		}
	}
	return env
}
