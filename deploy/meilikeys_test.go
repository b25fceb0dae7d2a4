package deploy_test

import (
	"cmp"
	"encoding/json"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/meshtrace/meshtrace/wasmplugin/manifest/manifesttest"
)

const (
	masterSecret  = "meshtrace-meilisearch"   // the master key, created by the operator
	indexerSecret = "meshtrace-indexer-meili" // the indexer's restricted keys, written by the Job
)

// secretsOf returns the Secrets a pod reads, by any route: env, envFrom, volumes (also projected ones) and
// image pull secrets.
func secretsOf(pod corev1.PodSpec) []string {
	var names []string
	for _, ctr := range slices.Concat(pod.InitContainers, pod.Containers) {
		for _, e := range ctr.Env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
				names = append(names, e.ValueFrom.SecretKeyRef.Name)
			}
		}
		for _, e := range ctr.EnvFrom {
			if e.SecretRef != nil {
				names = append(names, e.SecretRef.Name)
			}
		}
	}
	for _, v := range pod.Volumes {
		if v.Secret != nil {
			names = append(names, v.Secret.SecretName)
		}
		if v.Projected != nil {
			for _, src := range v.Projected.Sources {
				if src.Secret != nil {
					names = append(names, src.Secret.Name)
				}
			}
		}
	}
	for _, s := range pod.ImagePullSecrets {
		names = append(names, s.Name)
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// envFrom returns where the container's variable name comes from: "secret NAME/KEY", "configmap NAME/KEY",
// the literal value, or "" if unset.
func envFrom(ctr corev1.Container, name string) string {
	for _, e := range ctr.Env {
		if e.Name != name {
			continue
		}
		switch r := e.ValueFrom; {
		case r == nil:
			return e.Value
		case r.SecretKeyRef != nil:
			return "secret " + r.SecretKeyRef.Name + "/" + r.SecretKeyRef.Key
		case r.ConfigMapKeyRef != nil:
			return "configmap " + r.ConfigMapKeyRef.Name + "/" + r.ConfigMapKeyRef.Key
		}
	}
	return ""
}

// TestMasterKeyStaysWithMeilisearch checks, in every build, how the Meilisearch keys flow: the master key's
// Secret is read only by Meilisearch and the meshtrace-meili-keys Job; the Job runs the real `indexer
// meili-keys` with real flags, writing the Secret the indexer reads, and may write nothing else; the indexer
// reads only that Secret, holds no service account token, and gets both restricted keys; Meilisearch admits
// the Job's pods.
func TestMasterKeyStaysWithMeilisearch(t *testing.T) {
	cmd := exec.Command("go", "run", "../indexer/cmd/indexer", "meili-keys", "--help")
	cmd.Stderr = os.Stderr
	help, err := cmd.Output()
	if err != nil {
		t.Fatalf("indexer meili-keys --help: %v", err)
	}
	flags := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s+(?:-\w, )?--([a-z0-9-]+)`).FindAllStringSubmatch(string(help), -1) {
		flags[m[1]] = true
	}
	if !flags["secret"] || !flags["meili-url"] || !strings.Contains(string(help), "$MEILI_MASTER_KEY") {
		t.Fatalf("meili-keys --help lacks --secret, --meili-url or $MEILI_MASTER_KEY:\n%s", help)
	}

	v := manifesttest.Validator(t)
	for _, dir := range []string{"base", "overlays/istio", "overlays/gloo", "overlays/scale-out", "overlays/telemetry"} {
		t.Run(dir, func(t *testing.T) {
			c := newCluster(t, build(t, v, dir))
			var indexer, job *workload
			for i, w := range c.workloads {
				name := w.template.Labels["app.kubernetes.io/name"]
				secrets := secretsOf(w.template.Spec)
				switch name {
				case "meshtrace-indexer":
					indexer = &c.workloads[i]
					if !slices.Equal(secrets, []string{indexerSecret}) {
						t.Errorf("%s reads the Secrets %v, want only %s (never the master key's %s)", w.id, secrets,
							indexerSecret, masterSecret)
					}
				case "meshtrace-meili-keys":
					job = &c.workloads[i]
					if !w.job {
						t.Errorf("%s: the key maker must be a Job", w.id)
					}
				case "meilisearch":
				default:
					if slices.Contains(secrets, masterSecret) {
						t.Errorf("%s reads the master key's Secret %s", w.id, masterSecret)
					}
				}
			}
			if indexer == nil || job == nil {
				t.Fatalf("indexer %v, key Job %v: both required", indexer != nil, job != nil)
			}

			ictr := indexer.template.Spec.Containers[0]
			for _, env := range []string{"MESHTRACE_MEILI_KEY", "MESHTRACE_MEILI_SEARCH_KEY"} {
				if got, want := envFrom(ictr, env), "secret "+indexerSecret+"/"+env; got != want {
					t.Errorf("%s: %s from %q, want %q", indexer.id, env, got, want)
				}
			}
			if c.automountsToken(*indexer) {
				t.Errorf("%s mounts a service account token; it needs none", indexer.id)
			}

			pod := job.template.Spec
			if len(pod.Containers) != 1 || len(pod.InitContainers) != 0 {
				t.Fatalf("%s: %d containers, want one", job.id, len(pod.Containers))
			}
			jctr := pod.Containers[0]
			if jctr.Image != ictr.Image {
				t.Errorf("%s: image %s, want the indexer's %s", job.id, jctr.Image, ictr.Image)
			}
			if len(jctr.Args) == 0 || jctr.Args[0] != "meili-keys" {
				t.Fatalf("%s: args %v, want meili-keys ...", job.id, jctr.Args)
			}
			var secretArg string
			for i, a := range jctr.Args[1:] {
				if name, ok := strings.CutPrefix(a, "--"); ok {
					name, _, _ = strings.Cut(name, "=")
					if !flags[name] {
						t.Errorf("%s: --%s is no `indexer meili-keys` flag", job.id, name)
					}
					if name == "secret" && i+2 < len(jctr.Args) {
						secretArg = jctr.Args[i+2]
					}
				}
			}
			if secretArg != indexerSecret {
				t.Errorf("%s: --secret %q, want the Secret the indexer reads, %s", job.id, secretArg, indexerSecret)
			}
			for _, e := range jctr.Env {
				if name, ok := strings.CutPrefix(e.Name, "MESHTRACE_"); ok &&
					!flags[strings.ToLower(strings.ReplaceAll(name, "_", "-"))] {
					t.Errorf("%s: %s is no `indexer meili-keys` flag", job.id, e.Name)
				}
			}
			if got, want := envFrom(jctr, "MEILI_MASTER_KEY"), "secret "+masterSecret+"/master-key"; got != want {
				t.Errorf("%s: MEILI_MASTER_KEY from %q, want %q", job.id, got, want)
			}
			if got := envFrom(jctr, "MESHTRACE_MEILI_URL"); got != "configmap meshtrace-indexer/MESHTRACE_MEILI_URL" {
				t.Errorf("%s: MESHTRACE_MEILI_URL from %q, want the indexer's ConfigMap", job.id, got)
			}
			if pod.RestartPolicy != corev1.RestartPolicyOnFailure && pod.RestartPolicy != corev1.RestartPolicyNever {
				t.Errorf("%s: restartPolicy %q", job.id, pod.RestartPolicy)
			}
			if job.template.Annotations["sidecar.istio.io/inject"] != "false" {
				t.Errorf("%s: a sidecar would keep the Job from completing; annotate sidecar.istio.io/inject: \"false\"", job.id)
			}
			if !c.automountsToken(*job) {
				t.Errorf("%s: needs its service account token to write the Secret", job.id)
			}
			c.checkKeyJobRBAC(t, *job)
			c.checkMeilisearchAdmits(t, *job)
		})
	}
}

// automountsToken reports whether w's pods get a service account token.
func (c *cluster) automountsToken(w workload) bool {
	pod := w.template.Spec
	if pod.AutomountServiceAccountToken != nil {
		return *pod.AutomountServiceAccountToken
	}
	sa := cmp.Or(pod.ServiceAccountName, "default")
	for _, o := range c.objs {
		if o.Kind == "ServiceAccount" && o.Namespace == w.ns && o.Name == sa {
			var a corev1.ServiceAccount
			if err := json.Unmarshal(o.JSON, &a); err == nil && a.AutomountServiceAccountToken != nil {
				return *a.AutomountServiceAccountToken
			}
		}
	}
	return true
}

// checkKeyJobRBAC: the Job runs as its own service account, whose only grant is create and patch on the
// indexer's Secret.
func (c *cluster) checkKeyJobRBAC(t *testing.T, job workload) {
	sa := job.template.Spec.ServiceAccountName
	if sa == "" || sa == "default" || sa == "meshtrace-indexer" {
		t.Errorf("%s: service account %q, want one of its own", job.id, sa)
		return
	}
	roles := map[string]rbacv1.Role{}
	for _, o := range c.objs {
		if o.Kind == "Role" {
			var r rbacv1.Role
			decode(t, o, &r)
			roles[key(r.Namespace, r.Name)] = r
		}
		if o.Kind == "ClusterRoleBinding" || o.Kind == "ClusterRole" {
			t.Errorf("%s: meshtrace needs no cluster-wide RBAC", o)
		}
	}
	bound := 0
	for _, o := range c.objs {
		if o.Kind != "RoleBinding" {
			continue
		}
		var rb rbacv1.RoleBinding
		decode(t, o, &rb)
		if !slices.ContainsFunc(rb.Subjects, func(s rbacv1.Subject) bool {
			return s.Kind == "ServiceAccount" && s.Name == sa && cmp.Or(s.Namespace, rb.Namespace) == job.ns
		}) {
			continue
		}
		bound++
		r, ok := roles[key(rb.Namespace, rb.RoleRef.Name)]
		if rb.RoleRef.Kind != "Role" || !ok {
			t.Errorf("%s binds %s to %s %s, want a Role of this build", o, sa, rb.RoleRef.Kind, rb.RoleRef.Name)
			continue
		}
		for _, rule := range r.Rules {
			verbs := slices.Clone(rule.Verbs)
			slices.Sort(verbs)
			if !slices.Equal(rule.APIGroups, []string{""}) || !slices.Equal(rule.Resources, []string{"secrets"}) ||
				!slices.Equal(rule.ResourceNames, []string{indexerSecret}) || !slices.Equal(verbs, []string{"create", "patch"}) {
				t.Errorf("Role %s/%s grants %+v; want only create and patch on secrets/%s", r.Namespace, r.Name, rule, indexerSecret)
			}
		}
	}
	if bound != 1 {
		t.Errorf("%s: service account %s is bound %d times, want once", job.id, sa, bound)
	}
}

// checkMeilisearchAdmits: a NetworkPolicy selecting Meilisearch admits the Job's pods.
func (c *cluster) checkMeilisearchAdmits(t *testing.T, job workload) {
	for _, p := range c.networkPolicies(t) {
		o, np := p.obj, p.np
		if !p.pods.Matches(labels.Set{"app.kubernetes.io/name": "meilisearch"}) {
			continue
		}
		for _, rule := range np.Spec.Ingress {
			for _, peer := range rule.From {
				if peer.PodSelector == nil || peer.NamespaceSelector != nil {
					continue
				}
				ps, err := metav1.LabelSelectorAsSelector(peer.PodSelector)
				if err == nil && ps.Matches(labels.Set(job.template.Labels)) {
					return
				}
			}
		}
		t.Errorf("%s does not admit the pods of %s", o, job.id)
	}
}
