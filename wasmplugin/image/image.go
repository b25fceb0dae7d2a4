// Package image packages a proxy-wasm module as an OCI image in the Wasm "compat" variant that Istio
// pulls: one gzip-compressed tar layer holding plugin.wasm, OCI media types, and the manifest annotation
// module.wasm.image/variant=compat. Images are written as an OCI image layout, a tar of one, or pushed to a
// registry; nothing needs Docker.
package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Names fixed by the compat variant of the Wasm image specification.
const (
	// WasmFile is the path of the module inside the image layer.
	WasmFile = "plugin.wasm"
	// VariantAnnotation marks the manifest as the compat variant.
	VariantAnnotation = "module.wasm.image/variant"
	// VariantCompat is the value of VariantAnnotation.
	VariantCompat = "compat"
)

// wasmMagic is the first four bytes of every WebAssembly binary module.
var wasmMagic = []byte("\x00asm")

// Build returns the compat image holding wasm. The image is reproducible: the same bytes give the same
// digest (no timestamps in the tar, gzip header or config).
func Build(wasm []byte) (v1.Image, error) {
	if !bytes.HasPrefix(wasm, wasmMagic) {
		return nil, errors.New("not a WebAssembly binary module (missing \\0asm magic)")
	}
	layer, err := compatLayer(wasm)
	if err != nil {
		return nil, err
	}
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	base, err = mutate.ConfigFile(base, &v1.ConfigFile{Architecture: "wasm", OS: "wasip1", RootFS: v1.RootFS{Type: "layers"}})
	if err != nil {
		return nil, fmt.Errorf("set config: %w", err)
	}
	img, err := mutate.Append(base, mutate.Addendum{Layer: layer, MediaType: types.OCILayer})
	if err != nil {
		return nil, fmt.Errorf("append layer: %w", err)
	}
	return mutate.Annotations(img, map[string]string{VariantAnnotation: VariantCompat}).(v1.Image), nil
}

// compatLayer returns the gzip-compressed tar layer with wasm stored as WasmFile.
func compatLayer(wasm []byte) (v1.Layer, error) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf) // zero ModTime and no name: reproducible header
	tw := tar.NewWriter(zw)
	hdr := &tar.Header{Name: WasmFile, Mode: 0o444, Size: int64(len(wasm)), Typeflag: tar.TypeReg, Format: tar.FormatPAX}
	if err := tw.WriteHeader(hdr); err != nil {
		return nil, fmt.Errorf("tar header: %w", err)
	}
	if _, err := tw.Write(wasm); err != nil {
		return nil, fmt.Errorf("tar body: %w", err)
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("tar close: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("gzip close: %w", err)
	}
	gz := buf.Bytes()
	// From compressed bytes the tarball layer keeps them as the blob and derives the diff ID (the digest
	// of the uncompressed tar) by decompressing.
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(gz)), nil
	}, tarball.WithMediaType(types.OCILayer))
}

// WriteLayout writes img into the OCI image layout at dir (created if missing, appended to if present),
// tagging it with ref in the org.opencontainers.image.ref.name annotation when ref is not empty.
func WriteLayout(dir string, img v1.Image, ref string) error {
	p, err := layout.FromPath(dir)
	if err != nil {
		if p, err = layout.Write(dir, empty.Index); err != nil {
			return fmt.Errorf("create OCI layout %s: %w", dir, err)
		}
	}
	var opts []layout.Option
	if ref != "" {
		opts = append(opts, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": ref}))
	}
	if err := p.AppendImage(img, opts...); err != nil {
		return fmt.Errorf("write OCI layout %s: %w", dir, err)
	}
	return nil
}

// WriteArchive writes img as a tar of an OCI image layout (the "oci-archive" transport of skopeo and podman),
// which keeps the OCI manifest and its annotation; a `docker save` tarball would turn them into Docker types.
func WriteArchive(path string, img v1.Image, ref string) (err error) {
	dir, err := os.MkdirTemp("", "meshtrace-oci-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := WriteLayout(dir, img, ref); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("write %s: %w", path, cerr)
		}
	}()
	tw := tar.NewWriter(f)
	if err := tw.AddFS(os.DirFS(dir)); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return tw.Close()
}

// Push uploads img to ref with credentials from the default keychain (Docker config, credential helpers)
// and returns the manifest digest, the value Istio's WasmPlugin sha256 pins.
func Push(ctx context.Context, ref name.Reference, img v1.Image, opts ...remote.Option) (v1.Hash, error) {
	opts = append([]remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)}, opts...)
	if err := remote.Write(ref, img, opts...); err != nil {
		return v1.Hash{}, fmt.Errorf("push %s: %w", ref, err)
	}
	return img.Digest()
}

// FileSHA256 returns the hex SHA-256 of b: the checksum Istio verifies for modules fetched over http(s) or
// from a file, and the one Gloo's filePath users compare.
func FileSHA256(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
