package auth

import (
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/meshtrace/meshtrace/indexer/tenant"
)

// entry is one line of a tokens file or tenant map: a key (a token, a claim value) and its scope.
type entry struct {
	key   string
	scope tenant.Scope
}

// readEntries reads the file at path, of lines "<key> <tenant>[,<tenant>...]" or "<key> *", skipping blank
// lines and lines starting with '#'. what names the file and its keys in errors ("tokens file", "token");
// secret keys are never quoted in errors.
func readEntries(path, what, key string, secret bool) ([]entry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("auth: %s: %w", what, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("auth: %s %s: %w", what, path, err)
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("auth: %s %s is larger than %d bytes", what, path, MaxFileSize)
	}
	var es []entry
	seen := map[string]int{}
	for i, l := range strings.Split(string(data), "\n") {
		n := i + 1
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		bad := func(format string, args ...any) error {
			return fmt.Errorf("auth: %s %s line %d: %s", what, path, n, fmt.Sprintf(format, args...))
		}
		fields := strings.Fields(l)
		if len(fields) != 2 {
			return nil, bad("want \"<%s> <tenant>[,<tenant>...]\" or \"<%s> *\", got %d fields (a tenant list holds no spaces)", key, key, len(fields))
		}
		k, list := fields[0], fields[1]
		if first, dup := seen[k]; dup {
			return nil, bad("the %s of line %d again", key, first)
		}
		seen[k] = n
		if secret {
			switch {
			case len(k) < MinStaticTokenLen:
				return nil, bad("the %s is %d bytes, fewer than the %d needed", key, len(k), MinStaticTokenLen)
			case len(k) > MaxTokenLen:
				return nil, bad("the %s is %d bytes, more than the %d accepted", key, len(k), MaxTokenLen)
			case !printable(k):
				return nil, bad("the %s holds a byte that is not printable ASCII", key)
			}
		}
		s, err := parseScope(list)
		if err != nil {
			return nil, bad("%v", err)
		}
		es = append(es, entry{key: k, scope: s})
	}
	return es, nil
}

// parseScope parses "*" (every tenant) or a comma-separated list of tenant names.
func parseScope(list string) (tenant.Scope, error) {
	if list == "*" {
		return tenant.All(), nil
	}
	ts := strings.Split(list, ",")
	for _, t := range ts {
		if t == "*" {
			return tenant.Scope{}, fmt.Errorf("\"*\" (every tenant) stands alone, not in a list")
		}
		if t == "" {
			return tenant.Scope{}, fmt.Errorf("an empty tenant in the list %q", list)
		}
	}
	return tenant.Of(ts...)
}

// loadTokens reads a tokens file (Config.TokensFile) into scopes by the SHA-256 digest of their token.
func loadTokens(path string) (map[[sha256.Size]byte]tenant.Scope, error) {
	es, err := readEntries(path, "tokens file", "token", true)
	if err != nil {
		return nil, err
	}
	m := make(map[[sha256.Size]byte]tenant.Scope, len(es))
	for _, e := range es {
		m[sha256.Sum256([]byte(e.key))] = e.scope
	}
	return m, nil
}

// loadTenantMap reads a tenant map (Config.TenantMapFile) into scopes by claim value.
func loadTenantMap(path string) (map[string]tenant.Scope, error) {
	es, err := readEntries(path, "tenant map", "claim value", false)
	if err != nil {
		return nil, err
	}
	m := make(map[string]tenant.Scope, len(es))
	for _, e := range es {
		m[e.key] = e.scope
	}
	return m, nil
}
