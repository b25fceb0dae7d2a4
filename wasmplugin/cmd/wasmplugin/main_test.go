package main

import (
	"bytes"
	"context"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/meshtrace/meshtrace/wasmplugin/image"
	"github.com/meshtrace/meshtrace/wasmplugin/manifest/manifesttest"
)

// emptyModule is the smallest valid WebAssembly module: magic and version 1, no sections.
var emptyModule = []byte("\x00asm\x01\x00\x00\x00")

func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	root := newRoot(&out)
	root.SetArgs(args)
	root.SetErr(io.Discard)
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

func TestCommands(t *testing.T) {
	dir := t.TempDir()
	wasm := filepath.Join(dir, "filter.wasm")
	if err := os.WriteFile(wasm, emptyModule, 0o644); err != nil {
		t.Fatal(err)
	}
	img, err := image.Build(emptyModule)
	if err != nil {
		t.Fatal(err)
	}
	digest, _ := img.Digest()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	repo := strings.TrimPrefix(srv.URL, "http://") + "/meshtrace/filter"
	policy := "../../../filter/policy/testdata/example.json"
	v := manifesttest.Validator(t)

	cases := []struct {
		name    string
		args    []string
		want    []string // substrings of the output
		wantErr string
		valid   bool // output is manifests that must pass validation
	}{
		{name: "image", args: []string{"image", "--wasm", wasm, "--oci-layout", filepath.Join(dir, "oci"), "--archive", filepath.Join(dir, "f.tar")},
			want: []string{digest.String()}},
		{name: "image needs an output", args: []string{"image", "--wasm", wasm}, wantErr: "--oci-layout"},
		{name: "image refuses non-wasm", args: []string{"image", "--wasm", policy, "--oci-layout", filepath.Join(dir, "x")}, wantErr: "WebAssembly"},
		{name: "push", args: []string{"push", "--wasm", wasm, repo + ":v1"}, want: []string{repo + "@" + digest.String()}},
		{name: "push insecure", args: []string{"push", "--insecure", "--wasm", wasm, repo + ":v2"}, want: []string{repo + "@" + digest.String()}},
		{name: "render istio", args: []string{"render", "--policy", policy, "--url", "oci://" + repo + ":v1", "--wasm", wasm,
			"--selector", "app=checkout", "--priority", "5"},
			want: []string{"name: meshtrace-http", "name: meshtrace-network", "sha256: " + digest.Hex, "priority: 5"}, valid: true},
		{name: "render istio target ref", args: []string{"render", "--policy", policy, "--url", "oci://r/f:1", "--type", "http",
			"--target-ref", "gateway.networking.k8s.io/Gateway/ingress"}, want: []string{"kind: Gateway"}, valid: true},
		{name: "render gloo", args: []string{"render", "--gloo", "--policy", policy, "--image", repo + ":v1"},
			want: []string{"kind: Gateway", "image: " + repo + ":v1"}, valid: true},
		{name: "render http url pins the module checksum", args: []string{"render", "--policy", policy, "--type", "HTTP",
			"--url", "https://example.com/filter.wasm", "--wasm", wasm}, want: []string{"sha256: " + image.FileSHA256(emptyModule)}, valid: true},
		{name: "render sha256 and wasm", args: []string{"render", "--policy", policy, "--url", "oci://r/f:1", "--wasm", wasm,
			"--sha256", digest.Hex}, wantErr: "exclusive"},
		{name: "render port out of range", args: []string{"render", "--policy", policy, "--url", "oci://r/f:1", "--http-ports", "70000"},
			wantErr: "out of range"},
		{name: "render bad selector", args: []string{"render", "--policy", policy, "--url", "oci://r/f:1", "--selector", "app"}, wantErr: "selector"},
		{name: "render missing policy", args: []string{"render", "--url", "oci://r/f:1"}, wantErr: "policy"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := run(t, tc.args...)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			if tc.valid {
				if _, err := v.Check([]byte(out)); err != nil {
					t.Errorf("output fails validation: %v", err)
				}
			}
		})
	}

	// The pushed image is pullable by the printed digest and is the one `image` wrote.
	ref, err := name.ParseReference(repo + "@" + digest.String())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := remote.Image(ref); err != nil {
		t.Fatalf("pull %s: %v", ref, err)
	}
}
