package deploy_test

import (
	"encoding/json"
	"errors"
	"net"
	"net/url"
	"os"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	securityv1beta1 "istio.io/api/security/v1beta1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/meshtrace/meshtrace/indexer/auth"
	"github.com/meshtrace/meshtrace/indexer/tenant"
	"github.com/meshtrace/meshtrace/wasmplugin/manifest"
	"github.com/meshtrace/meshtrace/wasmplugin/manifest/manifesttest"
)

const (
	tenantsDir = "overlays/tenants"
	authSecret = "meshtrace-indexer-auth" // the indexer's tokens and tenant map, created by the operator
)

// exampleTeams are the teams the tenants overlay ships Grafana data sources for.
var exampleTeams = []string{"team-a", "team-b"}

// The Istio security kinds the tenants overlay uses, checked like the other Istio kinds: the envelope strictly,
// the spec strictly into its istio.io/api message (security/v1 aliases the v1beta1 messages).
func init() {
	extraKinds["security.istio.io/v1/PeerAuthentication"] = istioSpec(func() proto.Message { return &securityv1beta1.PeerAuthentication{} })
	extraKinds["security.istio.io/v1/AuthorizationPolicy"] = istioSpec(func() proto.Message { return &securityv1beta1.AuthorizationPolicy{} })
}

func istioSpec(newMsg func() proto.Message) func([]byte) error {
	return func(doc []byte) error {
		var e struct {
			APIVersion string            `json:"apiVersion"`
			Kind       string            `json:"kind"`
			Metadata   metav1.ObjectMeta `json:"metadata"`
			Spec       json.RawMessage   `json:"spec"`
		}
		strict, err := kjson.UnmarshalStrict(doc, &e, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
		if err != nil {
			return err
		}
		if err := errors.Join(strict...); err != nil {
			return err
		}
		if len(e.Spec) == 0 {
			return errors.New("spec is required")
		}
		return protojson.Unmarshal(e.Spec, newMsg())
	}
}

// indexerBuild builds the tree dir and returns it with its indexer workload and container.
func indexerBuild(t *testing.T, dir string) (*cluster, workload, corev1.Container) {
	t.Helper()
	c := newCluster(t, build(t, manifesttest.Validator(t), dir))
	for _, w := range c.workloads {
		if w.template.Labels["app.kubernetes.io/name"] != "meshtrace-indexer" {
			continue
		}
		for _, ctr := range w.template.Spec.Containers {
			if ctr.Name == "indexer" {
				return c, w, ctr
			}
		}
	}
	t.Fatalf("%s: no indexer container", dir)
	return nil, workload{}, corev1.Container{}
}

// TestTenantsIndexer checks the indexer of the tenants overlay: tenancy is on (static and OpenID read
// authentication, ingest tenants from tokens and from the mesh, per-tenant limits, Meilisearch enforcing tenant
// tokens), every file variable names a file of the Secret meshtrace-indexer-auth where it is mounted read-only,
// it reads no other Secret besides its Meilisearch keys, and it runs with the sidecar whose identity checks
// --ingest-tenant-from-mesh relies on. (TestIndexerConfiguration checks that every variable is a serve flag.)
func TestTenantsIndexer(t *testing.T) {
	c, w, ctr := indexerBuild(t, tenantsDir)
	env := c.indexerEnv(t, w.ns, ctr)

	for name, want := range map[string]string{
		"MESHTRACE_INGEST_TENANT_FROM_MESH":     "true",
		"MESHTRACE_MEILI_REQUIRE_TENANT_TOKENS": "true",
	} {
		if env[name] != want {
			t.Errorf("%s=%q, want %q", name, env[name], want)
		}
	}
	if u, err := url.Parse(env["MESHTRACE_OIDC_ISSUER"]); err != nil || u.Scheme != "https" || u.Host == "" {
		t.Errorf("MESHTRACE_OIDC_ISSUER=%q, want an https issuer URL", env["MESHTRACE_OIDC_ISSUER"])
	}
	for _, name := range []string{"MESHTRACE_OIDC_AUDIENCE", "MESHTRACE_OIDC_ADMIN_VALUE"} {
		if env[name] == "" {
			t.Errorf("%s is not set", name)
		}
	}
	for _, name := range []string{"MESHTRACE_TENANT_SPANS_PER_SECOND", "MESHTRACE_TENANT_BYTES_PER_SECOND"} {
		if v, err := strconv.ParseFloat(env[name], 64); err != nil || v <= 0 {
			t.Errorf("%s=%q, want a positive limit", name, env[name])
		}
	}
	for name, v := range env {
		if strings.Contains(v, "Bearer") {
			t.Errorf("%s holds a bearer value; tokens belong in %s", name, authSecret)
		}
	}

	// The files: where each variable points is a key of the Secret, mounted read-only.
	files := map[string]string{} // path in the container -> Secret key
	for _, v := range w.template.Spec.Volumes {
		if v.Secret == nil || v.Secret.SecretName != authSecret {
			continue
		}
		for _, m := range ctr.VolumeMounts {
			if m.Name != v.Name {
				continue
			}
			if !m.ReadOnly || m.SubPath != "" {
				t.Errorf("%s: mount of %s at %s: readOnly %v, subPath %q; want read-only, whole volume (a subPath never sees a rotated Secret)",
					w.id, authSecret, m.MountPath, m.ReadOnly, m.SubPath)
			}
			for _, it := range v.Secret.Items {
				files[path.Join(m.MountPath, it.Path)] = it.Key
			}
			if len(v.Secret.Items) == 0 {
				t.Errorf("%s: volume %s lists no items; list each key so a missing one fails visibly", w.id, v.Name)
			}
		}
		if m := v.Secret.DefaultMode; m != nil && *m&0o022 != 0 {
			t.Errorf("%s: volume %s: mode %#o lets others write", w.id, v.Name, *m)
		}
	}
	for name, key := range map[string]string{
		"MESHTRACE_API_TOKENS_FILE":    "api-tokens",
		"MESHTRACE_INGEST_TOKENS_FILE": "ingest-tokens",
		"MESHTRACE_OIDC_TENANT_MAP":    "tenant-map",
	} {
		got, ok := files[env[name]]
		if !ok {
			t.Errorf("%s=%q is no file of a read-only mount of the Secret %s (files %v)", name, env[name], authSecret, files)
		} else if got != key {
			t.Errorf("%s=%q is the Secret's key %s, want %s", name, env[name], got, key)
		}
	}
	if got, want := secretsOf(w.template.Spec), []string{authSecret, indexerSecret}; !slices.Equal(got, want) {
		t.Errorf("%s reads the Secrets %v, want %v (never the master key's %s)", w.id, got, want, masterSecret)
	}
	if !slices.ContainsFunc(ctr.VolumeMounts, func(m corev1.VolumeMount) bool {
		return m.Name == "data" && m.MountPath == "/var/lib/meshtrace"
	}) {
		t.Errorf("%s: the data volume (write-ahead log) is no longer mounted: %+v", w.id, ctr.VolumeMounts)
	}

	// The mesh identity needs the indexer's own sidecar; Meilisearch stays out of the mesh.
	// Istio injects a pod of a namespace without istio-injection when its label says so (the webhook's object
	// selector); an annotation "false" would still opt it out.
	if lbl, ann := w.template.Labels["sidecar.istio.io/inject"], w.template.Annotations["sidecar.istio.io/inject"]; lbl != "true" || ann == "false" {
		t.Errorf("%s: sidecar.istio.io/inject label %q, annotation %q: --ingest-tenant-from-mesh needs the indexer's sidecar (label \"true\")",
			w.id, lbl, ann)
	}
	for _, o := range c.workloads {
		if o.template.Labels["app.kubernetes.io/name"] == "meilisearch" && o.template.Annotations["sidecar.istio.io/inject"] != "false" {
			t.Errorf("%s: Meilisearch should stay out of the mesh as in the istio overlay", o.id)
		}
	}
}

// TestTenantsExamples checks the example files of the Secret's keys: each line parses as the indexer reads it
// (a tenant list of valid tenant names or "*"), the example teams have tokens, and no example token is long
// enough to be accepted (auth.MinStaticTokenLen), so that an example copied into the Secret fails the indexer's
// start instead of becoming a published credential.
func TestTenantsExamples(t *testing.T) {
	for _, f := range []struct {
		file   string
		secret bool // keys are tokens
		single bool // one tenant per key
	}{
		{"api-tokens.example", true, false},
		{"ingest-tokens.example", true, true},
		{"tenant-map.example", false, false},
	} {
		t.Run(f.file, func(t *testing.T) {
			data, err := os.ReadFile(path.Join(tenantsDir, f.file))
			if err != nil {
				t.Fatal(err)
			}
			tenants := map[string]bool{}
			n := 0
			for i, l := range strings.Split(string(data), "\n") {
				l = strings.TrimSpace(l)
				if l == "" || strings.HasPrefix(l, "#") {
					continue
				}
				n++
				fields := strings.Fields(l)
				if len(fields) != 2 {
					t.Errorf("line %d: %d fields, want \"<key> <tenants>\"", i+1, len(fields))
					continue
				}
				if f.secret && len(fields[0]) >= auth.MinStaticTokenLen {
					t.Errorf("line %d: an example token of %d bytes would be accepted (>= %d): make it obviously unusable",
						i+1, len(fields[0]), auth.MinStaticTokenLen)
				}
				if fields[1] == "*" && !f.single {
					continue
				}
				list := strings.Split(fields[1], ",")
				if f.single && len(list) != 1 {
					t.Errorf("line %d: an ingest token sends for exactly one tenant, not %q", i+1, fields[1])
				}
				for _, tn := range list {
					if err := tenant.Check(tn); err != nil {
						t.Errorf("line %d: %v", i+1, err)
					}
					tenants[tn] = true
				}
			}
			if n == 0 {
				t.Fatal("no example line")
			}
			if f.file == "api-tokens.example" {
				for _, team := range exampleTeams {
					if !tenants[team] {
						t.Errorf("no example token for %s, whose Grafana data source needs one", team)
					}
				}
			}
		})
	}
}

// TestTenantsMeshIdentity checks the Istio side of ingest tenancy: a PeerAuthentication STRICT, on every port,
// selects the indexer's pods; and the indexer's AuthorizationPolicies let any mesh workload send OTLP but only
// Grafana's service account and meshtrace's own pods call the read API, nobody without a verified identity.
// The same questions on the istio overlay (no such policies) must answer otherwise, so the check can fail.
func TestTenantsMeshIdentity(t *testing.T) {
	c, w, ctr := indexerBuild(t, tenantsDir)
	pod := labels.Set(w.template.Labels)

	strict := 0
	for _, o := range c.objs {
		if o.Kind != "PeerAuthentication" || o.Namespace != w.ns {
			continue
		}
		pa := decodeSpec(t, o, &securityv1beta1.PeerAuthentication{})
		if sel := pa.GetSelector().GetMatchLabels(); len(sel) == 0 || !labels.SelectorFromSet(sel).Matches(pod) {
			continue
		}
		if pa.GetMtls().GetMode() != securityv1beta1.PeerAuthentication_MutualTLS_STRICT {
			t.Errorf("%s: mTLS %v for the indexer, want STRICT", o, pa.GetMtls().GetMode())
			continue
		}
		for port, m := range pa.GetPortLevelMtls() {
			if m.GetMode() != securityv1beta1.PeerAuthentication_MutualTLS_STRICT {
				t.Errorf("%s: port %d is %v: every indexer port must be STRICT", o, port, m.GetMode())
			}
		}
		strict++
	}
	if strict != 1 {
		t.Errorf("%d STRICT PeerAuthentications select the indexer's pods, want 1", strict)
	}

	otlp := []int32{containerPort(t, ctr, "otlp-http"), containerPort(t, ctr, "otlp-grpc")}
	search := containerPort(t, ctr, "search")
	grafanaNS := grafanaNamespace(t, c)
	grafana := peer{ns: grafanaNS, principal: "cluster.local/ns/" + grafanaNS + "/sa/grafana"}
	teamA := peer{ns: "team-a", principal: "cluster.local/ns/team-a/sa/default"}
	self := peer{ns: w.ns, principal: "cluster.local/ns/" + w.ns + "/sa/meshtrace-indexer"}
	plaintext := peer{ns: "team-a"}
	for _, tc := range []struct {
		from peer
		port int32
		want bool
	}{
		{teamA, otlp[0], true}, {teamA, otlp[1], true}, {teamA, search, false},
		{grafana, search, true}, {self, search, true}, {self, otlp[0], true},
		{plaintext, otlp[0], false}, {plaintext, search, false},
		{peer{ns: grafanaNS, principal: "cluster.local/ns/" + grafanaNS + "/sa/other"}, search, false},
	} {
		if got := c.authzAllows(t, w, tc.from, tc.port); got != tc.want {
			t.Errorf("AuthorizationPolicy: %+v to port %d allowed %v, want %v", tc.from, tc.port, got, tc.want)
		}
	}

	// The control: without the overlay's policies, team-a reaches the read API.
	ci, wi, _ := indexerBuild(t, "overlays/istio")
	if !ci.authzAllows(t, wi, teamA, search) {
		t.Error("the evaluation refuses team-a on overlays/istio, which has no AuthorizationPolicy: it cannot tell")
	}
}

// peer is the source of a request as Istio sees it: the namespace and the verified principal ("" without
// mTLS).
type peer struct{ ns, principal string }

// authzAllows evaluates the ALLOW AuthorizationPolicies of w's namespace and of the root namespace that select w's
// pods (with Istio's semantics for the fields used: principals, namespaces, ports; no policy allows
// everything, any ALLOW policy denies what none of its rules matches). Other actions and fields fail the test.
func (c *cluster) authzAllows(t *testing.T, w workload, from peer, port int32) bool {
	t.Helper()
	var policies []*securityv1beta1.AuthorizationPolicy
	for _, o := range c.objs {
		if o.Kind != "AuthorizationPolicy" || o.Namespace != w.ns && o.Namespace != "istio-system" {
			continue
		}
		ap := decodeSpec(t, o, &securityv1beta1.AuthorizationPolicy{})
		if sel := ap.GetSelector().GetMatchLabels(); len(sel) > 0 && !labels.SelectorFromSet(sel).Matches(labels.Set(w.template.Labels)) {
			continue
		}
		if ap.GetAction() != securityv1beta1.AuthorizationPolicy_ALLOW {
			t.Fatalf("%s: action %v; this evaluation knows ALLOW only", o, ap.GetAction())
		}
		policies = append(policies, ap)
	}
	if len(policies) == 0 {
		return true
	}
	for _, ap := range policies {
		for _, r := range ap.GetRules() {
			if len(r.GetWhen()) > 0 {
				t.Fatalf("rule %v: conditions are not evaluated here", r)
			}
			fromOK := len(r.GetFrom()) == 0
			for _, f := range r.GetFrom() {
				s := f.GetSource()
				if len(s.GetNotPrincipals())+len(s.GetNotNamespaces())+len(s.GetIpBlocks())+len(s.GetNotIpBlocks())+
					len(s.GetRequestPrincipals())+len(s.GetNotRequestPrincipals())+len(s.GetRemoteIpBlocks())+len(s.GetNotRemoteIpBlocks()) > 0 {
					t.Fatalf("source %v: only principals and namespaces are evaluated here", s)
				}
				ok := true
				if len(s.GetPrincipals()) > 0 {
					ok = from.principal != "" && slices.ContainsFunc(s.GetPrincipals(), func(p string) bool { return istioMatch(p, from.principal) })
				}
				if len(s.GetNamespaces()) > 0 {
					// A namespace comes from the peer's certificate: without mTLS there is none.
					ok = ok && from.principal != "" && slices.ContainsFunc(s.GetNamespaces(), func(n string) bool { return istioMatch(n, from.ns) })
				}
				fromOK = fromOK || ok
			}
			toOK := len(r.GetTo()) == 0
			for _, to := range r.GetTo() {
				op := to.GetOperation()
				if len(op.GetNotPorts())+len(op.GetHosts())+len(op.GetNotHosts())+len(op.GetMethods())+len(op.GetNotMethods())+
					len(op.GetPaths())+len(op.GetNotPaths()) > 0 {
					t.Fatalf("operation %v: only ports are evaluated here", op)
				}
				toOK = toOK || len(op.GetPorts()) == 0 || slices.Contains(op.GetPorts(), strconv.Itoa(int(port)))
			}
			if fromOK && toOK {
				return true
			}
		}
	}
	return false
}

// istioMatch is Istio's string match of principals and namespaces: exact, "*", or a prefix or suffix wildcard.
func istioMatch(pattern, v string) bool {
	switch {
	case pattern == "*":
		return v != ""
	case strings.HasPrefix(pattern, "*"):
		return strings.HasSuffix(v, pattern[1:])
	case strings.HasSuffix(pattern, "*"):
		return strings.HasPrefix(v, pattern[:len(pattern)-1])
	}
	return pattern == v
}

// decodeSpec decodes the spec of the Istio object o into m.
func decodeSpec[M proto.Message](t *testing.T, o manifest.Object, m M) M {
	t.Helper()
	var raw struct {
		Spec json.RawMessage `json:"spec"`
	}
	decode(t, o, &raw)
	if err := protojson.Unmarshal(raw.Spec, m); err != nil {
		t.Fatalf("%s: spec: %v", o, err)
	}
	return m
}

func containerPort(t *testing.T, ctr corev1.Container, name string) int32 {
	t.Helper()
	for _, p := range ctr.Ports {
		if p.Name == name {
			return p.ContainerPort
		}
	}
	t.Fatalf("container %s has no port %s", ctr.Name, name)
	return 0
}

// TestTenantsNetworkPolicy checks, with NetworkPolicy semantics (policies selecting a pod add up; a pod no
// policy selects takes everything), who reaches which indexer port: OTLP from the mesh's namespaces as in the
// base, the search port only from Grafana's namespace and meshtrace. The istio overlay, which opens the search
// port to the mesh, must answer otherwise.
func TestTenantsNetworkPolicy(t *testing.T) {
	c, w, ctr := indexerBuild(t, tenantsDir)
	grafanaNS := grafanaNamespace(t, c)
	nsLabels := func(name string, extra ...string) labels.Set {
		s := labels.Set{"kubernetes.io/metadata.name": name}
		for i := 0; i+1 < len(extra); i += 2 {
			s[extra[i]] = extra[i+1]
		}
		return s
	}
	teamA := nsLabels("team-a", "istio-injection", "enabled")
	teamRev := nsLabels("team-b", "istio.io/rev", "stable")
	for _, tc := range []struct {
		ns   labels.Set
		port string
		want bool
	}{
		{teamA, "otlp-http", true}, {teamA, "otlp-grpc", true}, {teamA, "search", false},
		{teamRev, "otlp-http", true}, {teamRev, "search", false},
		{nsLabels("istio-system"), "otlp-http", true}, {nsLabels("istio-system"), "search", false},
		{nsLabels(grafanaNS), "search", true}, {nsLabels(w.ns), "search", true},
		{nsLabels("unmeshed"), "otlp-http", false}, {nsLabels("unmeshed"), "search", false},
	} {
		if got := c.netAdmits(t, w, ctr, tc.ns, labels.Set{"app": "x"}, tc.port); got != tc.want {
			t.Errorf("NetworkPolicy: a pod of namespace %v to port %s admitted %v, want %v", tc.ns, tc.port, got, tc.want)
		}
	}

	ci, wi, ctri := indexerBuild(t, "overlays/istio")
	if !ci.netAdmits(t, wi, ctri, teamA, labels.Set{"app": "x"}, "search") {
		t.Error("the evaluation refuses team-a's search on overlays/istio, whose policy admits it: it cannot tell")
	}
}

// netAdmits reports whether the NetworkPolicies let a pod with podLabels in a namespace with nsLabels reach w's
// pods on the container port named port. ipBlock peers are not evaluated (the test fails on them).
func (c *cluster) netAdmits(t *testing.T, w workload, ctr corev1.Container, nsLabels, podLabels labels.Set, port string) bool {
	t.Helper()
	number := containerPort(t, ctr, port)
	selected := false
	for _, p := range c.networkPolicies(t) {
		if p.np.Namespace != w.ns || !p.pods.Matches(labels.Set(w.template.Labels)) || !hasIngressType(p.np) {
			continue
		}
		selected = true
		for _, rule := range p.np.Spec.Ingress {
			portOK := len(rule.Ports) == 0
			for _, rp := range rule.Ports {
				if rp.Port == nil || rp.Port.String() == port || rp.Port.IntValue() == int(number) {
					portOK = true
				}
			}
			if !portOK {
				continue
			}
			if len(rule.From) == 0 {
				return true
			}
			for _, peer := range rule.From {
				if peer.IPBlock != nil {
					t.Fatalf("%s: ipBlock peers are not evaluated here", p.obj)
				}
				if peerAdmits(t, peer, w.ns, nsLabels, podLabels) {
					return true
				}
			}
		}
	}
	return !selected
}

func hasIngressType(np networkingv1.NetworkPolicy) bool {
	return len(np.Spec.PolicyTypes) == 0 || slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress)
}

// peerAdmits evaluates one NetworkPolicy peer for a source pod.
func peerAdmits(t *testing.T, peer networkingv1.NetworkPolicyPeer, policyNS string, nsLabels, podLabels labels.Set) bool {
	t.Helper()
	sel := func(s *metav1.LabelSelector) labels.Selector {
		ls, err := metav1.LabelSelectorAsSelector(s)
		if err != nil {
			t.Fatal(err)
		}
		return ls
	}
	if peer.NamespaceSelector == nil {
		// A pod selector alone: pods of the policy's own namespace.
		return nsLabels["kubernetes.io/metadata.name"] == policyNS && (peer.PodSelector == nil || sel(peer.PodSelector).Matches(podLabels))
	}
	return sel(peer.NamespaceSelector).Matches(nsLabels) && (peer.PodSelector == nil || sel(peer.PodSelector).Matches(podLabels))
}

// grafanaDataSource is a Grafana provisioning data source, with the fields the overlay may use (decoded
// strictly, so that a misspelt field such as secureJSONData, which Grafana would ignore, fails).
type grafanaDataSource struct {
	Name           string            `json:"name"`
	UID            string            `json:"uid"`
	Type           string            `json:"type"`
	Access         string            `json:"access"`
	OrgID          int               `json:"orgId"`
	URL            string            `json:"url"`
	IsDefault      bool              `json:"isDefault"`
	Editable       bool              `json:"editable"`
	JSONData       map[string]any    `json:"jsonData"`
	SecureJSONData map[string]string `json:"secureJsonData"`
}

// grafanaProvisioning returns the ConfigMap holding the overlay's Grafana data-source provisioning file and
// the file's data sources.
func grafanaProvisioning(t *testing.T, c *cluster) (corev1.ConfigMap, []grafanaDataSource) {
	t.Helper()
	var found []corev1.ConfigMap
	for _, o := range c.objs {
		if o.Kind != "ConfigMap" || o.Namespace == "meshtrace" {
			continue
		}
		var cm corev1.ConfigMap
		decode(t, o, &cm)
		found = append(found, cm)
	}
	if len(found) != 1 || len(found[0].Data) != 1 {
		t.Fatalf("want one ConfigMap outside meshtrace holding one provisioning file, got %d", len(found))
	}
	cm := found[0]
	var file struct {
		APIVersion  *int                `json:"apiVersion"`
		DataSources []grafanaDataSource `json:"datasources"`
	}
	for name, data := range cm.Data {
		if !strings.HasSuffix(name, ".yaml") {
			t.Errorf("ConfigMap %s/%s: %s: Grafana reads only .yaml/.yml provisioning files", cm.Namespace, cm.Name, name)
		}
		// Grafana's field names are case-sensitive; encoding/json's (under yaml.Unmarshal) are not.
		j, err := yaml.YAMLToJSON([]byte(data))
		if err != nil {
			t.Fatalf("ConfigMap %s/%s: %s: %v", cm.Namespace, cm.Name, name, err)
		}
		strict, err := kjson.UnmarshalStrict(j, &file, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
		if err := errors.Join(append(strict, err)...); err != nil {
			t.Fatalf("ConfigMap %s/%s: %s: %v", cm.Namespace, cm.Name, name, err)
		}
	}
	if file.APIVersion == nil || *file.APIVersion != 1 {
		t.Errorf("provisioning apiVersion %v, want 1", file.APIVersion)
	}
	return cm, file.DataSources
}

// grafanaNamespace is the namespace of the overlay's Grafana provisioning ConfigMap: Grafana's.
func grafanaNamespace(t *testing.T, c *cluster) string {
	cm, _ := grafanaProvisioning(t, c)
	return cm.Namespace
}

// envRef is a secure value Grafana fills from its environment: "Bearer ${VAR}".
var envRef = regexp.MustCompile(`^Bearer \$\{([A-Z][A-Z0-9_]*)\}$`)

// TestTenantsGrafana checks the Grafana provisioning file: one Jaeger data source per example team, each
// sending that team's token from Grafana's environment (never a literal token) in the Authorization header,
// one forwarding the user's OpenID token; every data source points at the indexer's read API Service, names
// unique.
func TestTenantsGrafana(t *testing.T) {
	c, w, ctr := indexerBuild(t, tenantsDir)
	cm, sources := grafanaProvisioning(t, c)
	if cm.Labels["grafana_datasource"] != "1" {
		t.Errorf("ConfigMap %s/%s: no label grafana_datasource=1 (the Grafana chart's sidecar picks data sources by it)", cm.Namespace, cm.Name)
	}
	teamOf := map[string]string{} // MESHTRACE_TOKEN_TEAM_A -> team-a
	for _, team := range exampleTeams {
		teamOf["MESHTRACE_TOKEN_"+strings.ToUpper(strings.ReplaceAll(team, "-", "_"))] = team
	}
	perTeam := map[string]int{}
	passThru := 0
	names, uids := map[string]bool{}, map[string]bool{}
	for _, ds := range sources {
		id := "data source " + strconv.Quote(ds.Name)
		if names[ds.Name] || ds.UID == "" || uids[ds.UID] {
			t.Errorf("%s: name and uid must be set and unique (uid %q)", id, ds.UID)
		}
		names[ds.Name], uids[ds.UID] = true, true
		if ds.Type != "jaeger" || ds.Access != "proxy" {
			t.Errorf("%s: type %q access %q, want jaeger through Grafana's proxy (the browser has no token)", id, ds.Type, ds.Access)
		}
		u, err := url.Parse(ds.URL)
		if err != nil {
			t.Errorf("%s: url: %v", id, err)
		} else if host, port, err := net.SplitHostPort(u.Host); err != nil {
			t.Errorf("%s: url %q has no port", id, ds.URL)
		} else if err := c.resolveHostPort(host, port); err != nil {
			t.Errorf("%s: url %q: %v", id, ds.URL, err)
		} else if !c.servicePortTargets(host, port, ctr, "search") {
			t.Errorf("%s: url %q is not the indexer's read API (container port search of %s)", id, ds.URL, w.id)
		}
		for k, v := range ds.JSONData {
			if s, ok := v.(string); ok && strings.Contains(strings.ToLower(s), "bearer") {
				t.Errorf("%s: jsonData.%s holds a credential; Viewers can read jsonData", id, k)
			}
		}
		var headerValues []string
		for k, v := range ds.SecureJSONData {
			if strings.HasPrefix(k, "httpHeaderValue") {
				headerValues = append(headerValues, k)
			}
			if !envRef.MatchString(v) {
				t.Errorf("%s: secureJsonData.%s = %q is not \"Bearer ${VAR}\": a literal token in the repository", id, k, v)
			}
		}
		switch {
		case ds.JSONData["oauthPassThru"] == true:
			passThru++
			if len(headerValues) > 0 || hasHeaderName(ds.JSONData) {
				t.Errorf("%s forwards the user's token and sends a fixed header too", id)
			}
		default:
			if ds.JSONData["httpHeaderName1"] != "Authorization" || len(headerValues) != 1 {
				t.Errorf("%s: jsonData.httpHeaderName1 %v, %d header values; want the one header Authorization", id,
					ds.JSONData["httpHeaderName1"], len(headerValues))
				continue
			}
			m := envRef.FindStringSubmatch(ds.SecureJSONData["httpHeaderValue1"])
			if m == nil {
				continue // reported above
			}
			team, ok := teamOf[m[1]]
			if !ok {
				t.Errorf("%s: token variable %s is no example team's (%v)", id, m[1], exampleTeams)
				continue
			}
			if !strings.Contains(ds.Name, team) {
				t.Errorf("%s sends %s's token but does not say so in its name", id, team)
			}
			perTeam[team]++
		}
	}
	for _, team := range exampleTeams {
		if perTeam[team] != 1 {
			t.Errorf("%d data sources send %s's token, want 1", perTeam[team], team)
		}
	}
	if passThru != 1 {
		t.Errorf("%d data sources forward the user's OAuth token (jsonData.oauthPassThru), want 1", passThru)
	}
}

func hasHeaderName(jsonData map[string]any) bool {
	for k := range jsonData {
		if strings.HasPrefix(k, "httpHeaderName") {
			return true
		}
	}
	return false
}

// servicePortTargets reports whether Service host (NAME.NAMESPACE.svc...) port targets ctr's port named target.
func (c *cluster) servicePortTargets(host, port string, ctr corev1.Container, target string) bool {
	name, rest, _ := strings.Cut(host, ".")
	ns, _, _ := strings.Cut(rest, ".")
	s, ok := c.services[key(ns, name)]
	if !ok {
		return false
	}
	want := strconv.Itoa(int(containerPortOrZero(ctr, target)))
	for _, p := range s.Spec.Ports {
		if strconv.Itoa(int(p.Port)) == port {
			return p.TargetPort.String() == target || p.TargetPort.String() == want
		}
	}
	return false
}

func containerPortOrZero(ctr corev1.Container, name string) int32 {
	for _, p := range ctr.Ports {
		if p.Name == name {
			return p.ContainerPort
		}
	}
	return 0
}
