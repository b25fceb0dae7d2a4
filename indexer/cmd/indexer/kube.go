package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// serviceAccountDir is where Kubernetes mounts a pod's service account token, CA and namespace.
var serviceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount"

// fieldManager names `indexer meili-keys` as the owner of the fields it applies.
const fieldManager = "meshtrace-meili-keys"

// kubeAPI is the Kubernetes API server as seen from inside a pod: the few requests `indexer meili-keys`
// makes do not warrant client-go.
type kubeAPI struct {
	base   string // https://HOST:PORT
	token  string
	client *http.Client
}

// inClusterAPI returns the API server of the pod's cluster (KUBERNETES_SERVICE_HOST and _PORT) with the
// service account's token and CA from dir, and the pod's namespace.
func inClusterAPI(dir string) (*kubeAPI, string, error) {
	host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
	if host == "" || port == "" {
		return nil, "", errors.New("--secret: not in a Kubernetes pod (KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT unset)")
	}
	read := func(name string) (string, error) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return "", fmt.Errorf("--secret: service account: %w (is its token mounted?)", err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	token, err := read("token")
	if err != nil {
		return nil, "", err
	}
	ns, err := read("namespace")
	if err != nil {
		return nil, "", err
	}
	ca, err := read("ca.crt")
	if err != nil {
		return nil, "", err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(ca)) {
		return nil, "", fmt.Errorf("--secret: no certificate in %s", filepath.Join(dir, "ca.crt"))
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return &kubeAPI{
		base:   "https://" + net.JoinHostPort(host, port),
		token:  token,
		client: &http.Client{Transport: tr, Timeout: 30 * time.Second},
	}, ns, nil
}

// applySecret creates or updates the Opaque Secret ns/name to hold data, by server-side apply (PATCH
// application/apply-patch+yaml, force): RBAC needs to grant only "create" and "patch" on that one name.
func (k *kubeAPI) applySecret(ctx context.Context, ns, name string, data map[string]string) error {
	enc := map[string][]byte{}
	for key, v := range data {
		enc[key] = []byte(v) // encoding/json writes []byte as base64, as Secret data is
	}
	body, err := json.Marshal(map[string]any{
		"apiVersion": "v1",
		"kind":       "Secret",
		"metadata": map[string]any{
			"name":      name,
			"namespace": ns,
			"labels": map[string]string{
				"app.kubernetes.io/part-of":    "meshtrace",
				"app.kubernetes.io/managed-by": fieldManager,
			},
		},
		"type": "Opaque",
		"data": enc,
	})
	if err != nil {
		return err
	}
	u := fmt.Sprintf("%s/api/v1/namespaces/%s/secrets/%s?fieldManager=%s&force=true", k.base,
		url.PathEscape(ns), url.PathEscape(name), url.QueryEscape(fieldManager))
	req, err := http.NewRequestWithContext(ctx, http.MethodPatch, u, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/apply-patch+yaml") // JSON is YAML
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Authorization", "Bearer "+k.token)
	resp, err := k.client.Do(req)
	if err != nil {
		return fmt.Errorf("apply Secret %s/%s: %w", ns, name, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 == 2 {
		return nil
	}
	var status struct {
		Message string `json:"message"`
		Reason  string `json:"reason"`
	}
	msg := strings.TrimSpace(string(b))
	if json.Unmarshal(b, &status) == nil && status.Message != "" {
		msg = status.Message + " (" + status.Reason + ")"
	}
	return fmt.Errorf("apply Secret %s/%s: %s: %s", ns, name, resp.Status, msg)
}
