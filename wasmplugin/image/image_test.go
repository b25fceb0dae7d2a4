package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"log"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/meshtrace/meshtrace/testenv/artifact"
)

// shippedFilter returns the TinyGo filter build (`make filter`): a real module, not made-up bytes.
func shippedFilter(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(artifact.Builds(t)[0].Path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// roundTrip stores an image somewhere and reads it back from there.
type roundTrip func(t *testing.T, img v1.Image) v1.Image

func TestRoundTrip(t *testing.T) {
	wasm := shippedFilter(t)
	ctx := context.Background()

	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name string
		trip roundTrip
	}{
		{"registry", func(t *testing.T, img v1.Image) v1.Image {
			ref, err := name.ParseReference(u.Host + "/meshtrace/filter:test")
			if err != nil {
				t.Fatal(err)
			}
			pushed, err := Push(ctx, ref, img)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := img.Digest()
			if pushed != want {
				t.Fatalf("Push returned %s, image digest %s", pushed, want)
			}
			pulled, err := remote.Image(ref, remote.WithContext(ctx))
			if err != nil {
				t.Fatal(err)
			}
			byDigest, err := remote.Image(ref.Context().Digest(pushed.String()), remote.WithContext(ctx))
			if err != nil {
				t.Fatalf("pull by digest %s: %v", pushed, err)
			}
			if d, _ := byDigest.Digest(); d != pushed {
				t.Fatalf("pulled by digest %s, got %s", pushed, d)
			}
			return pulled
		}},
		{"oci-layout", func(t *testing.T, img v1.Image) v1.Image {
			dir := filepath.Join(t.TempDir(), "layout")
			if err := WriteLayout(dir, img, "meshtrace/filter:test"); err != nil {
				t.Fatal(err)
			}
			return fromLayout(t, dir, img)
		}},
		{"oci-archive", func(t *testing.T, img v1.Image) v1.Image {
			path := filepath.Join(t.TempDir(), "filter.tar")
			if err := WriteArchive(path, img, "meshtrace/filter:test"); err != nil {
				t.Fatal(err)
			}
			return fromArchive(t, path, img)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			img, err := Build(wasm)
			if err != nil {
				t.Fatal(err)
			}
			got := tc.trip(t, img)
			checkCompat(t, got, wasm)
			want, _ := img.Digest()
			if d, err := got.Digest(); err != nil || d != want {
				t.Fatalf("digest after round trip = %v (%v), want %s", d, err, want)
			}
		})
	}
}

// fromArchive unpacks an OCI archive with the standard library and opens the image of img's digest in it.
func fromArchive(t *testing.T, path string, img v1.Image) v1.Image {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dir := t.TempDir()
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if hdr.Typeflag == tar.TypeDir {
			continue
		}
		target := filepath.Join(dir, filepath.FromSlash(hdr.Name))
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(target, body, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return fromLayout(t, dir, img)
}

// fromLayout opens the image of img's digest in the OCI layout at dir.
func fromLayout(t *testing.T, dir string, img v1.Image) v1.Image {
	t.Helper()
	p, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	got, err := p.Image(d)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// checkCompat checks what Istio's image fetcher requires of a compat image, independently of Build: OCI
// manifest, the variant annotation, exactly one OCI tar+gzip layer whose only file is plugin.wasm with the
// exact module bytes.
func checkCompat(t *testing.T, img v1.Image, wasm []byte) {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.MediaType != types.OCIManifestSchema1 || m.Config.MediaType != types.OCIConfigJSON {
		t.Errorf("media types = %q / %q", m.MediaType, m.Config.MediaType)
	}
	if got := m.Annotations[VariantAnnotation]; got != VariantCompat {
		t.Errorf("annotation %s = %q", VariantAnnotation, got)
	}
	if len(m.Layers) != 1 || m.Layers[0].MediaType != types.OCILayer {
		t.Fatalf("layers = %+v, want one %s", m.Layers, types.OCILayer)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	// Read the blob as stored and decompress it here, checking both digests the manifest and config claim.
	rc, err := layers[0].Compressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	blob, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	if got := "sha256:" + FileSHA256(blob); got != m.Layers[0].Digest.String() {
		t.Errorf("layer blob digest %s, manifest says %s", got, m.Layers[0].Digest)
	}
	zr, err := gzip.NewReader(bytes.NewReader(blob))
	if err != nil {
		t.Fatal(err)
	}
	tarBytes, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.RootFS.DiffIDs) != 1 || cfg.RootFS.DiffIDs[0].String() != "sha256:"+FileSHA256(tarBytes) {
		t.Errorf("config diff_ids %v, want the digest of the uncompressed layer sha256:%s", cfg.RootFS.DiffIDs, FileSHA256(tarBytes))
	}
	tr := tar.NewReader(bytes.NewReader(tarBytes))
	var files []string
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, hdr.Name)
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if hdr.Name == WasmFile && !bytes.Equal(body, wasm) {
			t.Errorf("%s holds %d bytes differing from the %d-byte module", WasmFile, len(body), len(wasm))
		}
	}
	if len(files) != 1 || files[0] != WasmFile {
		t.Errorf("layer files = %v, want [%s]", files, WasmFile)
	}
}

// TestFilterBuilds packs the shipped filter builds (`make filter`) and checks them through a registry.
func TestFilterBuilds(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range artifact.Builds(t) {
		t.Run(b.Name, func(t *testing.T) {
			wasm, err := os.ReadFile(b.Path)
			if err != nil {
				t.Fatal(err)
			}
			img, err := Build(wasm)
			if err != nil {
				t.Fatal(err)
			}
			ref, err := name.ParseReference(u.Host + "/meshtrace/filter-" + b.Name + ":test")
			if err != nil {
				t.Fatal(err)
			}
			d, err := Push(context.Background(), ref, img)
			if err != nil {
				t.Fatal(err)
			}
			pulled, err := remote.Image(ref.Context().Digest(d.String()))
			if err != nil {
				t.Fatal(err)
			}
			checkCompat(t, pulled, wasm)
		})
	}
}

func TestBuildIsReproducible(t *testing.T) {
	wasm := shippedFilter(t)
	digest := func(b []byte) v1.Hash {
		img, err := Build(b)
		if err != nil {
			t.Fatal(err)
		}
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	a, b := digest(wasm), digest(bytes.Clone(wasm))
	if a != b {
		t.Fatalf("same module, different digests %s %s", a, b)
	}
	changed := append(bytes.Clone(wasm), 0) // a trailing byte changes the content, not the magic
	if c := digest(changed); c == a {
		t.Fatalf("different modules share digest %s", c)
	}
}

func TestBuildRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"text", []byte("hello")},
		{"truncated magic", []byte("\x00as")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Build(tc.in); err == nil || !strings.Contains(err.Error(), "WebAssembly") {
				t.Fatalf("Build(%q) error = %v", tc.in, err)
			}
		})
	}
}

func TestFileSHA256(t *testing.T) {
	// SHA-256 of the empty string, from FIPS 180-2 test vectors.
	if got := FileSHA256(nil); got != "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" {
		t.Fatal(got)
	}
}
