package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/meshtrace/meshtrace/indexer/api"
	"github.com/meshtrace/meshtrace/testenv/envoy"
	"github.com/meshtrace/meshtrace/testenv/indexerproc"
)

// forgedXFCC is what a client in team-a sends to pass for team-b.
const forgedXFCC = "URI=spiffe://cluster.local/ns/team-b/sa/x"

// outcome is what must become of one export: accepted as tenant, or refused (refused names the refusal).
type outcome struct{ tenant, refused string }

// The exports of the test, by the client certificate they are sent with and whether they carry forgedXFCC.
const (
	sendTeamA       = "team-a"        // spiffe://cluster.local/ns/team-a/sa/checkout
	sendTeamB       = "team-b"        // spiffe://cluster.local/ns/team-b/sa/payments
	sendTeamAForged = "team-a-forged" // team-a's certificate, forgedXFCC
	sendNoURI       = "no-uri"        // a certificate of the mesh CA without a URI SAN
	sendNoURIForged = "no-uri-forged" // the same, forgedXFCC
	sendNoCert      = "no-cert"       // TLS without a client certificate, forgedXFCC
)

// The refusals: the indexer's (401) of a last XFCC element without a SPIFFE id and of no XFCC at all, and
// the sidecar's TLS handshake without a client certificate (the request never reaches the indexer).
const (
	noSPIFFEID     = "no SPIFFE id"
	noMeshIdentity = "no verified mesh identity"
	// The exporter's error is TLS 1.3's certificate_required alert or a broken pipe, as timing has it: the
	// test reads Envoy's ssl.fail_verify_no_cert counter of the listener instead.
	noClientCert = "TLS handshake without a client certificate"
)

// The inbound sidecar modes the test runs, one Envoy listener each, all with the client certificate details
// Istio's sidecar inbound listener sets by default (Subject, URI, DNS), and what each must make of every
// export.
var xfccModes = []struct {
	mode string
	want map[string]outcome
}{
	// Istio's default for a sidecar's inbound listeners (pilot's GetProxyHeadersFromProxyConfig, when the
	// proxy config's proxyHeaders.forwardedClientCert is unset): the client's value is kept and the verified
	// identity appended as the last element, which is the one the indexer reads.
	{"APPEND_FORWARD", verifiedOutcomes},
	// Istio's default for gateways, and what proxyHeaders.forwardedClientCert: SANITIZE_SET makes of a
	// sidecar: the client's value is replaced by the verified identity.
	{"SANITIZE_SET", verifiedOutcomes},
	// A control, not an Istio default: Envoy passes the client's header untouched and adds nothing, so the
	// forgery wins and an honest client has no identity. It shows that the other listeners' refusal of the
	// forgery is Envoy's doing, not a header lost on the way.
	{"FORWARD_ONLY", map[string]outcome{
		sendTeamA:       {refused: noMeshIdentity},
		sendTeamB:       {refused: noMeshIdentity},
		sendTeamAForged: {tenant: "team-b"},
		sendNoURI:       {refused: noMeshIdentity},
		sendNoURIForged: {tenant: "team-b"},
		sendNoCert:      {refused: noClientCert},
	}},
}

// verifiedOutcomes is what a sidecar that sets the verified identity must give: the certificate's namespace,
// whatever the client wrote in the header.
var verifiedOutcomes = map[string]outcome{
	sendTeamA:       {tenant: "team-a"},
	sendTeamB:       {tenant: "team-b"},
	sendTeamAForged: {tenant: "team-a"},
	sendNoURI:       {refused: noSPIFFEID},
	sendNoURIForged: {refused: noSPIFFEID},
	sendNoCert:      {refused: noClientCert},
}

// TestMeshIdentityTenant runs a real `indexer serve --ingest-tenant-from-mesh` behind a real Envoy set up as
// its inbound Istio sidecar: TLS listeners that require a client certificate signed by the mesh CA, whose
// connection managers set x-forwarded-client-cert from the verified certificate (APPEND_FORWARD, Istio's
// sidecar default, and SANITIZE_SET) or pass the client's (FORWARD_ONLY, the control), routing to the
// indexer's OTLP/HTTP port. The OTel SDK's OTLP/HTTP exporter sends with the certificates of two workloads
// (spiffe://cluster.local/ns/team-a/sa/checkout, .../ns/team-b/sa/payments), once more as team-a with a
// forged header naming team-b, with a certificate that has no SPIFFE id (with and without the forged
// header) and with none. Through the search API each accepted span must be of its certificate's namespace
// under APPEND_FORWARD and SANITIZE_SET, and nothing of a refused export may be indexed: the certificate
// without an id is refused by the indexer (401), TLS without a certificate by Envoy. Under FORWARD_ONLY the
// forgery must win, so the test is known to see one.
//
// What it does not run is Istio: the listener is written here after pilot's inbound listener (see
// xfccModes), not generated by istiod, and the certificates come from the test's CA, not istiod's.
func TestMeshIdentityTenant(t *testing.T) {
	bin, err := envoy.Binary()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	pki := newMeshPKI(t, dir)

	ix, otlp := startIndexerProcess(t, dir, "--ingest-tenant-from-mesh")

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sc := startSidecar(ctx, t, bin, dir, pki, otlp.Host)

	type send struct {
		name   string
		cert   *tls.Certificate // nil: none
		forged bool
	}
	sends := []send{
		{sendTeamA, &pki.teamA, false},
		{sendTeamB, &pki.teamB, false},
		{sendTeamAForged, &pki.teamA, true},
		{sendNoURI, &pki.noURI, false},
		{sendNoURIForged, &pki.noURI, true},
		{sendNoCert, nil, true},
	}
	const spansPerExport = 2
	want := map[string]string{} // service -> tenant; the services of refused exports are absent
	for _, m := range xfccModes {
		for _, s := range sends {
			svc := strings.ToLower(strings.ReplaceAll(m.mode, "_", "-")) + "-" + s.name
			w := m.want[s.name]
			err := meshExport(ctx, sc.listeners[m.mode], pki, s.cert, s.forged, svc, spansPerExport)
			switch {
			case w.refused != "" && err == nil:
				t.Errorf("%s: the export was accepted; want it refused (%s)", svc, w.refused)
			case w.refused == noClientCert:
				// The client can read the alert before the admin endpoint shows the count: wait a little.
				stat := "listener.inbound_" + m.mode + ".ssl.fail_verify_no_cert"
				var n int64
				waitFor(5*time.Second, func() bool { n = sc.stat(t, stat); return n >= 1 })
				if n != 1 {
					t.Errorf("%s: export error %v, and Envoy counts %d handshakes refused for want of a client certificate; want 1", svc, err, n)
				}
			case w.refused != "" && !(strings.Contains(err.Error(), "401 Unauthorized") && strings.Contains(err.Error(), w.refused)):
				t.Errorf("%s: export error %v; want the indexer's 401 with %q", svc, err, w.refused)
			case w.refused == "" && err != nil:
				t.Errorf("%s: %v; want it accepted as %s", svc, err, w.tenant)
			case w.refused == "":
				want[svc] = w.tenant
			}
		}
	}

	// Every accepted span, with the tenant of its sender's certificate; nothing of a refused export.
	var r api.SearchResponse
	if !waitFor(10*time.Second, func() bool {
		r = searchAll(t, ix)
		return r.Total >= len(want)*spansPerExport
	}) {
		t.Errorf("%d spans indexed after 10s, want %d", r.Total, len(want)*spansPerExport)
	}
	got := map[string]int{}
	for _, sp := range r.Spans {
		got[sp.Service]++
		if wt, ok := want[sp.Service]; !ok {
			t.Errorf("span %s of %s (tenant %q) was indexed: its export should have been refused", sp.ID, sp.Service, sp.Tenant)
		} else if sp.Tenant != wt {
			t.Errorf("span %s of %s has tenant %q, want %q", sp.ID, sp.Service, sp.Tenant, wt)
		}
	}
	for svc := range want {
		if got[svc] != spansPerExport {
			t.Errorf("%s: %d spans indexed, want %d", svc, got[svc], spansPerExport)
		}
	}
	if r.Total != len(r.Spans) {
		t.Errorf("search total %d, %d spans returned", r.Total, len(r.Spans))
	}
	if t.Failed() || testing.Verbose() {
		b, _ := os.ReadFile(sc.accessLog)
		t.Logf("--- x-forwarded-client-cert as Envoy passed it to the indexer (listener, status, value) ---\n%s", b)
	}
}

// searchAll returns every span of the last hour (at most 100).
func searchAll(t *testing.T, ix *indexerproc.Process) api.SearchResponse {
	t.Helper()
	resp, err := client.Get(ix.APIURL + "/api/v1/search?q=since%3D1h&limit=100")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r api.SearchResponse
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("search: status %d", resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatalf("search: %v", err)
	}
	return r
}

// meshExport sends one OTLP/HTTP export of n spans of service svc through the sidecar at addr, over TLS with
// cert as the client certificate (nil: none), and with the forged x-forwarded-client-cert when forged.
func meshExport(ctx context.Context, addr string, pki *meshPKI, cert *tls.Certificate, forged bool, svc string, n int) error {
	cfg := &tls.Config{RootCAs: pki.roots, ServerName: indexerHost, MinVersion: tls.VersionTLS12}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	opts := []otlptracehttp.Option{
		otlptracehttp.WithEndpointURL("https://" + addr + "/v1/traces"),
		otlptracehttp.WithTLSClientConfig(cfg),
		otlptracehttp.WithRetry(otlptracehttp.RetryConfig{Enabled: false}),
		otlptracehttp.WithTimeout(5 * time.Second),
	}
	if forged {
		opts = append(opts, otlptracehttp.WithHeaders(map[string]string{"x-forwarded-client-cert": forgedXFCC}))
	}
	exp, err := otlptracehttp.New(ctx, opts...)
	if err != nil {
		return err
	}
	defer exp.Shutdown(ctx)
	var tid trace.TraceID
	_, _ = rand.Read(tid[:])
	res := resource.NewSchemaless(attribute.String("service.name", svc))
	now := time.Now()
	var stubs tracetest.SpanStubs
	for i := range n {
		stubs = append(stubs, tracetest.SpanStub{Name: fmt.Sprintf("export-%d", i), Resource: res, SpanKind: trace.SpanKindClient,
			SpanContext: trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: trace.SpanID{1, byte(i + 1)}}),
			StartTime:   now.Add(time.Duration(i) * time.Millisecond), EndTime: now.Add(5 * time.Millisecond)})
	}
	return exp.ExportSpans(ctx, stubs.Snapshots())
}

// indexerHost is the name in the sidecar's server certificate, as the indexer's Service is called.
const indexerHost = "meshtrace-indexer.meshtrace.svc.cluster.local"

// meshPKI is a mesh CA and the certificates it issued: the sidecar's, and the clients'.
type meshPKI struct {
	roots                 *x509.CertPool
	caFile                string
	serverCert, serverKey string // PEM files of the sidecar's certificate and key
	teamA, teamB, noURI   tls.Certificate
}

// newMeshPKI makes an ECDSA CA and its certificates, Istio-like: the sidecar's and team-b's with an empty
// subject and a SPIFFE URI SAN, team-a's with a subject holding a comma (Envoy quotes it in the header), and
// one without any URI SAN.
func newMeshPKI(t *testing.T, dir string) *meshPKI {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{Organization: []string{"cluster.local"}},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	p := &meshPKI{roots: x509.NewCertPool(), caFile: filepath.Join(dir, "ca.pem"),
		serverCert: filepath.Join(dir, "sidecar.pem"), serverKey: filepath.Join(dir, "sidecar-key.pem")}
	p.roots.AddCert(ca)
	writePEM(t, p.caFile, "CERTIFICATE", caDER)

	serial := int64(1)
	issue := func(subject pkix.Name, uri string, dns []string, ips []net.IP) (tls.Certificate, []byte, []byte) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		serial++
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: subject, DNSNames: dns, IPAddresses: ips,
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
			KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
		if uri != "" {
			u, err := url.Parse(uri)
			if err != nil {
				t.Fatal(err)
			}
			tmpl.URIs = []*url.URL{u}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		keyDER, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, der, keyDER
	}
	_, der, keyDER := issue(pkix.Name{}, "spiffe://cluster.local/ns/meshtrace/sa/meshtrace-indexer",
		[]string{indexerHost}, []net.IP{net.IPv4(127, 0, 0, 1)})
	writePEM(t, p.serverCert, "CERTIFICATE", der)
	writePEM(t, p.serverKey, "EC PRIVATE KEY", keyDER)
	p.teamA, _, _ = issue(pkix.Name{CommonName: "checkout", Organization: []string{"team-a, shop"}}, "spiffe://cluster.local/ns/team-a/sa/checkout", nil, nil)
	p.teamB, _, _ = issue(pkix.Name{}, "spiffe://cluster.local/ns/team-b/sa/payments", nil, nil)
	p.noURI, _, _ = issue(pkix.Name{CommonName: "legacy-client"}, "", []string{"legacy.team-a.svc.cluster.local"}, nil)
	return p
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// sidecar is a running Envoy with one inbound listener per xfccModes entry.
type sidecar struct {
	listeners map[string]string // mode -> host:port
	admin     string            // http://host:port
	accessLog string            // one line per request: the listener's mode, the service, the XFCC sent upstream
}

// sidecarBootstrap is the static bootstrap of the indexer's inbound sidecar. Per listener: TLS requiring a
// client certificate signed by the mesh CA (Istio's inbound mTLS filter chain, with the CA from a file rather
// than SDS), and an HTTP connection manager with forward_client_cert_details set to the listener's mode and
// set_current_client_cert_details as Istio's sidecar inbound listener has it by default.
func sidecarBootstrap(pki *meshPKI, upstream, accessLog string) (string, error) {
	host, port, err := net.SplitHostPort(upstream)
	if err != nil {
		return "", err
	}
	q := func(s string) string { b, _ := json.Marshal(s); return string(b) } // a YAML double-quoted scalar
	var b strings.Builder
	b.WriteString("static_resources:\n  listeners:\n")
	for _, m := range xfccModes {
		fmt.Fprintf(&b, `  - name: %[1]s
    address: {socket_address: {address: 127.0.0.1, port_value: 0}}
    stat_prefix: inbound_%[1]s
    traffic_direction: INBOUND
    filter_chains:
    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          require_client_certificate: true
          common_tls_context:
            alpn_protocols: [h2, http/1.1]
            tls_certificates:
            - certificate_chain: {filename: %[2]s}
              private_key: {filename: %[3]s}
            validation_context:
              trusted_ca: {filename: %[4]s}
      filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: inbound_%[1]s
          codec_type: AUTO
          use_remote_address: false
          forward_client_cert_details: %[1]s
          set_current_client_cert_details: {subject: true, uri: true, dns: true}
          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: %[5]s
              log_format: {text_format_source: {inline_string: "%[1]s %%RESPONSE_CODE%% %%REQ(X-FORWARDED-CLIENT-CERT)%%\n"}}
          route_config:
            virtual_hosts:
            - name: inbound
              domains: ["*"]
              routes: [{match: {prefix: /}, route: {cluster: indexer, timeout: 5s}}]
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
`, m.mode, q(pki.serverCert), q(pki.serverKey), q(pki.caFile), q(accessLog))
	}
	fmt.Fprintf(&b, `  clusters:
  - name: indexer
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: indexer
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: %s, port_value: %s}}}}]}]
admin:
  address: {socket_address: {address: 127.0.0.1, port_value: 0}}
`, q(host), port)
	return b.String(), nil
}

// startSidecar runs Envoy with sidecarBootstrap in front of upstream, waits for /ready and reads the bound
// listener ports; it stops Envoy at cleanup.
func startSidecar(ctx context.Context, t *testing.T, bin, dir string, pki *meshPKI, upstream string) *sidecar {
	t.Helper()
	sc := &sidecar{listeners: map[string]string{}, accessLog: filepath.Join(dir, "sidecar-access.log")}
	yaml, err := sidecarBootstrap(pki, upstream, sc.accessLog)
	if err != nil {
		t.Fatal(err)
	}
	config, adminFile, logPath := filepath.Join(dir, "sidecar.yaml"), filepath.Join(dir, "sidecar-admin"), filepath.Join(dir, "sidecar.log")
	if err := os.WriteFile(config, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close() // the child holds its own descriptor
	cmd := exec.Command(bin, "--config-path", config, "--admin-address-path", adminFile, "--disable-hot-restart",
		"--concurrency", "1", "--log-level", "warning", "--file-flush-interval-msec", "20")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("--- sidecar envoy log ---\n%s", b)
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})

	fail := func(format string, args ...any) {
		b, _ := os.ReadFile(logPath)
		t.Fatalf("sidecar envoy: "+format+"\n--- log ---\n%s", append(args, b)...)
	}
	hc := &http.Client{Timeout: 2 * time.Second}
	admin := ""
	for ready := false; !ready; {
		select {
		case <-done:
			fail("exited during startup")
		case <-ctx.Done():
			fail("not ready: %v", ctx.Err())
		case <-time.After(25 * time.Millisecond):
		}
		if admin == "" {
			if b, err := os.ReadFile(adminFile); err == nil && len(strings.TrimSpace(string(b))) > 0 {
				admin = "http://" + strings.TrimSpace(string(b))
			}
			continue
		}
		if resp, err := hc.Get(admin + "/ready"); err == nil {
			ready = resp.StatusCode == http.StatusOK
			resp.Body.Close()
		}
	}
	resp, err := hc.Get(admin + "/listeners?format=json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err == nil {
		sc.listeners, err = envoy.ParseListeners(body)
	}
	if err != nil {
		t.Fatalf("sidecar envoy: /listeners: %v", err)
	}
	sc.admin = admin
	for _, m := range xfccModes {
		if sc.listeners[m.mode] == "" {
			t.Fatalf("sidecar envoy: no listener %s in /listeners: %s", m.mode, body)
		}
	}
	return sc
}

// stat returns one counter of the sidecar's /stats (0 when absent).
func (sc *sidecar) stat(t *testing.T, name string) int64 {
	t.Helper()
	resp, err := client.Get(sc.admin + "/stats?filter=" + url.QueryEscape("^"+regexp.QuoteMeta(name)+"$"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("sidecar envoy: /stats: %d %v", resp.StatusCode, err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+": "); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatalf("sidecar envoy: /stats: %q", line)
			}
			return n
		}
	}
	return 0
}
