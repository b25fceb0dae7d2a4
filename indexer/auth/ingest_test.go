package auth

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestIngestTenant(t *testing.T) {
	dir := t.TempDir()
	tokens := filepath.Join(dir, "ingest")
	if err := os.WriteFile(tokens, []byte("# ingest tokens\ningest-token-of-team-a team-a\ningest-token-of-team-b team-b\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const spiffe = `By=spiffe://cluster.local/ns/meshtrace/sa/indexer;Hash=abc;Subject="";URI=spiffe://cluster.local/ns/`
	for _, tc := range []struct {
		name    string
		cfg     IngestConfig
		headers map[string]string
		want    string // "" for a refusal
	}{
		{"token a", IngestConfig{TokensFile: tokens}, map[string]string{"Authorization": "Bearer ingest-token-of-team-a"}, "team-a"},
		{"token b", IngestConfig{TokensFile: tokens, TrustXFCC: true}, map[string]string{"Authorization": "Bearer ingest-token-of-team-b", XFCCHeader: spiffe + "shop/sa/x"}, "team-b"},
		{"unknown token", IngestConfig{TokensFile: tokens, TrustXFCC: true}, map[string]string{"Authorization": "Bearer ingest-token-of-team-c", XFCCHeader: spiffe + "shop/sa/x"}, ""},
		{"no token", IngestConfig{TokensFile: tokens}, nil, ""},
		{"xfcc namespace", IngestConfig{TrustXFCC: true}, map[string]string{XFCCHeader: spiffe + "shop/sa/checkout"}, "shop"},
		{"xfcc last element", IngestConfig{TrustXFCC: true}, map[string]string{XFCCHeader: "URI=spiffe://td/ns/forged/sa/x," + spiffe + "shop/sa/checkout"}, "shop"},
		{"xfcc untrusted", IngestConfig{TokensFile: tokens}, map[string]string{XFCCHeader: spiffe + "shop/sa/checkout"}, ""},
		{"xfcc without spiffe", IngestConfig{TrustXFCC: true}, map[string]string{XFCCHeader: "Hash=abc;DNS=example.com"}, ""},
		{"xfcc bad namespace", IngestConfig{TrustXFCC: true}, map[string]string{XFCCHeader: spiffe + "Shop_1/sa/x"}, ""},
		{"xfcc missing", IngestConfig{TrustXFCC: true}, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in, err := NewIngest(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			got, err := in.Tenant(func(n string) string { return tc.headers[n] })
			if tc.want == "" {
				if err == nil || !errors.Is(err, ErrUnauthenticated) {
					t.Fatalf("tenant %q, err %v; want ErrUnauthenticated", got, err)
				}
				if strings.Contains(err.Error(), "ingest-token-of") {
					t.Fatalf("error quotes the token: %v", err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("tenant %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestNewIngest(t *testing.T) {
	if in, err := NewIngest(IngestConfig{}); in != nil || err != nil {
		t.Fatalf("nothing configured: %v, %v; want no tenancy", in, err)
	}
	dir := t.TempDir()
	for name, content := range map[string]string{
		"two tenants": "ingest-token-of-team-a team-a,team-b\n",
		"every":       "ingest-token-of-team-a *\n",
		"short":       "short team-a\n",
	} {
		p := filepath.Join(dir, strings.ReplaceAll(name, " ", "-"))
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := NewIngest(IngestConfig{TokensFile: p}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
