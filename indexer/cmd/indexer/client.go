package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/meshtrace/meshtrace/indexer/api"
)

// client calls a running indexer's search API.
type client struct {
	server string
	token  string
	http   *http.Client
}

func addClientFlags(f *pflag.FlagSet, c *client) {
	f.StringVar(&c.server, "server", "http://localhost:8080", "address of a running `indexer serve` (its --api-addr)")
	f.StringVar(&c.token, "token", "", "API token sent as \"Authorization: Bearer\" (a static token or a JWT) to an indexer that requires one; prefer MESHTRACE_TOKEN, which ps does not show")
}

// get fetches path (with query parameters) and decodes the JSON answer into out, or returns the server's error.
func (c *client) get(ctx context.Context, path string, params url.Values, out any) ([]byte, error) {
	hc := c.http
	if hc == nil {
		hc = &http.Client{Timeout: 60 * time.Second}
	}
	u := strings.TrimRight(c.server, "/") + path
	if len(params) > 0 {
		u += "?" + params.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		var e api.ErrorResponse
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return nil, fmt.Errorf("%s", e.Error)
		}
		return nil, fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	if err := json.Unmarshal(body, out); err != nil {
		return nil, fmt.Errorf("decode answer of %s: %w", u, err)
	}
	return body, nil
}
