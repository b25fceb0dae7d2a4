// Command wasmplugin packages the meshtrace filter as a Wasm OCI image and renders the proxy configuration
// that loads it:
//
//	wasmplugin image  --wasm build/filter.wasm --oci-layout out/oci [--archive out/filter.tar] [--tag REF]
//	wasmplugin push   --wasm build/filter.wasm [--insecure] REGISTRY/REPO:TAG
//	wasmplugin render --policy policy.json --url oci://REGISTRY/REPO:TAG --sha256 DIGEST --selector app=checkout
//	wasmplugin render --policy policy.json --gloo --image REGISTRY/REPO:TAG
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/spf13/cobra"

	"github.com/meshtrace/meshtrace/wasmplugin/image"
	"github.com/meshtrace/meshtrace/wasmplugin/render"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := newRoot(os.Stdout).ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "wasmplugin:", err)
		os.Exit(1)
	}
}

func newRoot(stdout io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "wasmplugin",
		Short:         "Package the meshtrace filter as an OCI image and render Istio or Gloo configuration",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.AddCommand(imageCmd(), pushCmd(), renderCmd())
	return root
}

func imageCmd() *cobra.Command {
	var wasmPath, layoutDir, archive, tag string
	c := &cobra.Command{
		Use:   "image",
		Short: "Write the compat Wasm image as an OCI layout and/or an OCI archive; print its digest",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if layoutDir == "" && archive == "" {
				return errors.New("give --oci-layout and/or --archive")
			}
			img, err := buildImage(wasmPath)
			if err != nil {
				return err
			}
			if layoutDir != "" {
				if err := image.WriteLayout(layoutDir, img, tag); err != nil {
					return err
				}
			}
			if archive != "" {
				if err := image.WriteArchive(archive, img, tag); err != nil {
					return err
				}
			}
			d, err := img.Digest()
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), d)
			return nil
		},
	}
	c.Flags().StringVar(&wasmPath, "wasm", "build/filter.wasm", "filter module")
	c.Flags().StringVar(&layoutDir, "oci-layout", "", "OCI image layout directory to write (appended to if present)")
	c.Flags().StringVar(&archive, "archive", "", "tar file of an OCI layout to write (oci-archive)")
	c.Flags().StringVar(&tag, "tag", "", "reference name recorded in the layout index")
	return c
}

func pushCmd() *cobra.Command {
	var (
		wasmPath string
		insecure bool
	)
	c := &cobra.Command{
		Use:   "push REGISTRY/REPO:TAG",
		Short: "Push the compat Wasm image; print the pinned reference (credentials from the Docker config)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var opts []name.Option
			if insecure {
				opts = append(opts, name.Insecure)
			}
			ref, err := name.ParseReference(args[0], opts...)
			if err != nil {
				return err
			}
			img, err := buildImage(wasmPath)
			if err != nil {
				return err
			}
			d, err := image.Push(cmd.Context(), ref, img)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), ref.Context().Digest(d.String()))
			return nil
		},
	}
	c.Flags().StringVar(&wasmPath, "wasm", "build/filter.wasm", "filter module")
	c.Flags().BoolVar(&insecure, "insecure", false, "allow a plain-HTTP registry")
	return c
}

// buildImage reads the module at path and packages it as a compat Wasm image.
func buildImage(path string) (v1.Image, error) {
	wasm, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	img, err := image.Build(wasm)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return img, nil
}

// renderFlags are the render command's flags that need parsing before they fill render.Istio.
type renderFlags struct {
	policyPath, selector, wasmPath string
	targetRefs, types              []string
	httpPorts, netPorts            []uint
	priority                       int32
	gloo                           bool
}

func renderCmd() *cobra.Command {
	var (
		rf renderFlags
		o  render.Istio
		g  render.Gloo
	)
	c := &cobra.Command{
		Use:   "render",
		Short: "Print Istio WasmPlugins (HTTP and NETWORK) or a Gloo Edge Gateway for a policy",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pol, err := os.ReadFile(rf.policyPath)
			if err != nil {
				return err
			}
			var out []byte
			if rf.gloo {
				out, err = render.GlooGateway(g, pol)
			} else if err = rf.complete(&o, cmd.Flags().Changed("priority")); err == nil {
				pts := make([]render.PluginType, len(rf.types))
				for i, t := range rf.types {
					pts[i] = render.PluginType(strings.ToUpper(t))
				}
				out, err = render.IstioPlugins(o, pol, pts...)
			}
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(out)
			return err
		},
	}
	f := c.Flags()
	f.StringVar(&rf.policyPath, "policy", "", "policy JSON file (required)")
	_ = c.MarkFlagRequired("policy")
	f.BoolVar(&rf.gloo, "gloo", false, "render a Gloo Edge Enterprise Gateway instead of Istio WasmPlugins")
	// Istio
	f.StringVar(&o.Name, "name", "meshtrace", "WasmPlugin base name (-http / -network appended)")
	f.StringVar(&o.Namespace, "namespace", "", "namespace (istio-system for mesh-wide)")
	f.StringVar(&o.URL, "url", "", "module URL: oci://REGISTRY/REPO:TAG, http(s):// or file://")
	f.StringVar(&o.SHA256, "sha256", "", "pinned checksum: image digest for oci://, module SHA-256 otherwise (sha256: prefix allowed)")
	f.StringVar(&rf.wasmPath, "wasm", "", "compute --sha256 from this module (image digest for oci:// URLs)")
	f.StringVar(&rf.selector, "selector", "", "workload labels, k=v[,k=v]")
	f.StringSliceVar(&rf.targetRefs, "target-ref", nil, "Service/NAME or GROUP/KIND/NAME (repeatable)")
	f.StringSliceVar(&rf.types, "type", []string{"HTTP", "NETWORK"}, "plugin types")
	f.StringVar(&o.Phase, "phase", "STATS", "AUTHN, AUTHZ, STATS or UNSPECIFIED_PHASE")
	f.Int32Var(&rf.priority, "priority", 0, "priority within the phase (set only when the flag is given)")
	f.StringVar(&o.FailStrategy, "fail-strategy", "FAIL_OPEN", "FAIL_OPEN, FAIL_CLOSE or FAIL_RELOAD")
	f.StringVar(&o.ImagePullPolicy, "image-pull-policy", "", "IfNotPresent or Always")
	f.StringVar(&o.ImagePullSecret, "image-pull-secret", "", "Secret with registry credentials")
	f.StringVar(&o.HTTPMode, "http-mode", "", "CLIENT, SERVER or CLIENT_AND_SERVER: the side(s) the HTTP WasmPlugin selects (default: both; a direction auto policy renders one WasmPlugin per side, a fixed direction one in the mode it implies)")
	f.UintSliceVar(&rf.httpPorts, "http-ports", nil, "HTTP plugin destination ports")
	f.StringVar(&o.NetworkMode, "network-mode", "", "NETWORK plugin mode (default CLIENT)")
	f.UintSliceVar(&rf.netPorts, "network-ports", nil, "NETWORK plugin ports (default: the policy's Kafka and peer service ports)")
	// Gloo
	f.StringVar(&g.Name, "gateway", "gateway-proxy", "Gloo Gateway name")
	f.StringVar(&g.Namespace, "gateway-namespace", "gloo-system", "Gloo Gateway namespace")
	f.Uint32Var(&g.BindPort, "bind-port", 8080, "Gloo Gateway bind port")
	f.StringVar(&g.Image, "image", "", "Gloo: OCI reference of the filter image")
	f.StringVar(&g.FilePath, "file-path", "", "Gloo: module path on the proxy instead of an image")
	f.StringVar(&g.Stage, "stage", "AuthNStage", "Gloo filter stage")
	f.StringVar(&g.Predicate, "predicate", "Before", "Gloo stage predicate: Before, During or After")
	return c
}

// complete fills the parts of o that come from parsed flags; withPriority says --priority was given.
func (rf *renderFlags) complete(o *render.Istio, withPriority bool) error {
	o.SHA256 = strings.TrimPrefix(o.SHA256, "sha256:")
	if rf.wasmPath != "" {
		if o.SHA256 != "" {
			return errors.New("--sha256 and --wasm are exclusive")
		}
		sum, err := moduleChecksum(rf.wasmPath, strings.HasPrefix(o.URL, "oci://"))
		if err != nil {
			return err
		}
		o.SHA256 = sum
	}
	if rf.selector != "" {
		o.Selector = map[string]string{}
		for _, kv := range strings.Split(rf.selector, ",") {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || k == "" {
				return fmt.Errorf("--selector %q: want k=v[,k=v]", rf.selector)
			}
			o.Selector[k] = v
		}
	}
	for _, r := range rf.targetRefs {
		ref, err := render.ParseTargetRef(r)
		if err != nil {
			return err
		}
		o.TargetRefs = append(o.TargetRefs, ref)
	}
	var err error
	if o.HTTPPorts, err = ports(rf.httpPorts); err != nil {
		return err
	}
	if o.NetworkPorts, err = ports(rf.netPorts); err != nil {
		return err
	}
	if withPriority {
		o.Priority = &rf.priority
	}
	return nil
}

// moduleChecksum is what Istio verifies for the module at path: the digest of its compat image when it is
// pulled from a registry, the module's own SHA-256 otherwise.
func moduleChecksum(path string, oci bool) (string, error) {
	wasm, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	if !oci {
		return image.FileSHA256(wasm), nil
	}
	img, err := image.Build(wasm)
	if err != nil {
		return "", err
	}
	d, err := img.Digest()
	if err != nil {
		return "", err
	}
	return d.Hex, nil
}

func ports(in []uint) ([]uint32, error) {
	var out []uint32
	for _, p := range in {
		if p == 0 || p > 65535 {
			return nil, fmt.Errorf("port %d out of range", p)
		}
		out = append(out, uint32(p))
	}
	return out, nil
}
