package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/meilisearch/meilisearch-go"
	"github.com/spf13/cobra"

	"github.com/meshtrace/meshtrace/indexer/store/meili"
)

// MasterKeyEnv is the environment variable `indexer meili-keys` reads the Meilisearch master key from when
// --master-key-file is not given (the name Meilisearch itself reads it from).
const MasterKeyEnv = "MEILI_MASTER_KEY"

// The environment variables of `indexer serve` that take the two keys, and so the names `indexer meili-keys`
// prints them under (env-file lines, the data keys of the Secret it writes).
const (
	indexerKeyEnv = envPrefix + "MEILI_KEY"
	searchKeyEnv  = envPrefix + "MEILI_SEARCH_KEY"
)

// keySpec is one API key `indexer meili-keys` maintains.
type keySpec struct {
	role    string // "indexer" or "search": part of the key's uid
	env     string // the variable of `indexer serve` that takes it
	actions []string
}

var keySpecs = []keySpec{
	{role: "indexer", env: indexerKeyEnv, actions: meili.IndexerActions},
	{role: "search", env: searchKeyEnv, actions: meili.SearchActions},
}

// apiKey is a key made by ensureKeys.
type apiKey struct {
	env   string // e.g. MESHTRACE_MEILI_KEY
	uid   string
	value string
}

type meiliKeysConfig struct {
	url, masterKeyFile, prefix string
	secret, secretNamespace    string
	wait                       time.Duration
}

func newMeiliKeysCmd() *cobra.Command {
	c := meiliKeysConfig{prefix: "meshtrace-", wait: 5 * time.Minute}
	cmd := &cobra.Command{
		Use:   "meili-keys",
		Short: "Create the indexer's two restricted Meilisearch API keys (run once with the master key)",
		Long: `Create, with the Meilisearch master key, the two API keys the indexer runs with, so that the master key never
leaves its Secret: an index management key (` + strings.Join(meili.IndexerActions, ", ") + `) and a search key
("search" only), both restricted to the indexes --index-prefix* (default meshtrace-*), without expiry.

The master key is read from the file --master-key-file ("-": standard input), else from $` + MasterKeyEnv + `;
never from a flag value, which ps would show. Every key has a fixed uid derived from its role and the prefix,
and Meilisearch derives a key's value from its uid and the master key: running the command again prints the
same keys, re-creating a key whose actions or indexes differ from the ones above (same uid, same value).

The keys are printed as env-file lines for indexer serve:
  ` + indexerKeyEnv + `=...
  ` + searchKeyEnv + `=...
e.g. bin/indexer meili-keys --meili-url URL --master-key-file - < master.key |
       kubectl -n meshtrace create secret generic meshtrace-indexer-meili --from-env-file=/dev/stdin
With --secret NAME (inside a Kubernetes pod) they are instead written, by server-side apply with the pod's
service account, into the Secret NAME (data keys as above) in --secret-namespace or the pod's namespace;
the account needs only "create" and "patch" on that one Secret. deploy/base runs it so, as a Job.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
			return runMeiliKeys(cmd.Context(), c, cmd.InOrStdin(), cmd.OutOrStdout(), log)
		},
	}
	f := cmd.Flags()
	f.StringVar(&c.url, "meili-url", "", "Meilisearch URL (required)")
	f.StringVar(&c.masterKeyFile, "master-key-file", "", `file holding the master key ("-": standard input); empty: $`+MasterKeyEnv)
	f.StringVar(&c.prefix, "index-prefix", c.prefix, "the keys are restricted to the indexes <index-prefix>*: the store's index prefix")
	f.StringVar(&c.secret, "secret", "", "write the keys into this Kubernetes Secret (in-cluster service account) instead of printing them")
	f.StringVar(&c.secretNamespace, "secret-namespace", "", "namespace of --secret (default: the pod's namespace)")
	f.DurationVar(&c.wait, "wait", c.wait, "how long to retry while Meilisearch is unreachable or not ready")
	return cmd
}

func runMeiliKeys(ctx context.Context, c meiliKeysConfig, stdin io.Reader, stdout io.Writer, log *slog.Logger) error {
	if c.url == "" {
		return errors.New("--meili-url is required")
	}
	if c.prefix == "" || strings.ContainsAny(c.prefix, "*") {
		return fmt.Errorf("--index-prefix %q: must be non-empty and hold no *", c.prefix)
	}
	master, err := readMasterKey(c.masterKeyFile, stdin)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.wait)
	defer cancel()
	keys, err := ensureKeys(ctx, c.url, master, c.prefix, log)
	if err != nil {
		return err
	}
	if c.secret == "" {
		for _, k := range keys {
			if _, err := fmt.Fprintf(stdout, "%s=%s\n", k.env, k.value); err != nil {
				return err
			}
		}
		return nil
	}
	kube, ns, err := inClusterAPI(serviceAccountDir)
	if err != nil {
		return err
	}
	if c.secretNamespace != "" {
		ns = c.secretNamespace
	}
	data := map[string]string{}
	for _, k := range keys {
		data[k.env] = k.value
	}
	if err := kube.applySecret(ctx, ns, c.secret, data); err != nil {
		return err
	}
	log.Info("wrote the Meilisearch keys into the Secret", "namespace", ns, "secret", c.secret,
		"keys", strings.Join(slices.Sorted(maps.Keys(data)), ","))
	return nil
}

// readMasterKey reads the master key from file ("-": stdin) or, without a file, from $MEILI_MASTER_KEY.
func readMasterKey(file string, stdin io.Reader) (string, error) {
	var key string
	switch file {
	case "":
		key = os.Getenv(MasterKeyEnv)
		if strings.TrimSpace(key) == "" {
			return "", fmt.Errorf("no master key: give --master-key-file or set %s", MasterKeyEnv)
		}
	case "-":
		b, err := io.ReadAll(io.LimitReader(stdin, 4096))
		if err != nil {
			return "", fmt.Errorf("master key from standard input: %w", err)
		}
		key = string(b)
	default:
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("--master-key-file: %w", err)
		}
		key = string(b)
	}
	key = strings.TrimSpace(key)
	if key == "" {
		return "", errors.New("the master key is empty")
	}
	return key, nil
}

// ensureKeys makes sure both keys exist on the server with the wanted actions and indexes, and returns them.
// A key with the fixed uid but other actions, indexes or an expiry is deleted and created again.
func ensureKeys(ctx context.Context, url, master, prefix string, log *slog.Logger) ([]apiKey, error) {
	client := meilisearch.New(url, meilisearch.WithAPIKey(master), meilisearch.DisableRetries(),
		meilisearch.WithCustomClient(&http.Client{Timeout: 30 * time.Second}))
	indexes := []string{prefix + "*"}
	var keys []apiKey
	for _, spec := range keySpecs {
		uid := meili.KeyUID(spec.role, prefix)
		want := &meilisearch.Key{
			UID:         uid,
			Name:        "meshtrace " + spec.role,
			Description: fmt.Sprintf("meshtrace %s key for the indexes %s (made by indexer meili-keys)", spec.role, indexes[0]),
			Actions:     spec.actions,
			Indexes:     indexes,
		}
		k, err := ensureKey(ctx, client, want, log)
		if err != nil {
			return nil, fmt.Errorf("meili-keys: %s key (uid %s): %w", spec.role, uid, err)
		}
		keys = append(keys, apiKey{env: spec.env, uid: uid, value: k.Key})
	}
	return keys, nil
}

func ensureKey(ctx context.Context, client meilisearch.ServiceManager, want *meilisearch.Key, log *slog.Logger) (*meilisearch.Key, error) {
	for range 3 { // a concurrent run may create or delete the key between our requests
		got, err := withRetry(ctx, log, "get key", func() (*meilisearch.Key, error) {
			return client.GetKeyWithContext(ctx, want.UID)
		})
		switch {
		case err == nil && sameGrant(got, want):
			log.Info("API key present", "name", want.Name, "uid", want.UID)
			return got, nil
		case err == nil:
			log.Warn("API key differs from the wanted one; re-creating it (same uid, same value)", "name", want.Name,
				"uid", want.UID, "actions", got.Actions, "indexes", got.Indexes, "want_actions", want.Actions,
				"want_indexes", want.Indexes)
			if _, err := withRetry(ctx, log, "delete key", func() (bool, error) {
				return client.DeleteKeyWithContext(ctx, want.UID)
			}); err != nil && apiCode(err) != "api_key_not_found" {
				return nil, err
			}
		case apiCode(err) != "api_key_not_found":
			return nil, err
		}
		k, err := withRetry(ctx, log, "create key", func() (*meilisearch.Key, error) {
			return client.CreateKeyWithContext(ctx, want)
		})
		if err == nil {
			log.Info("API key created", "name", want.Name, "uid", want.UID, "actions", want.Actions, "indexes", want.Indexes)
			return k, nil
		}
		if apiCode(err) != "api_key_already_exists" {
			return nil, err
		}
	}
	return nil, errors.New("the key kept changing under us (another meili-keys running?)")
}

// sameGrant reports whether a key grants exactly what want does, forever.
func sameGrant(got, want *meilisearch.Key) bool {
	return got.ExpiresAt.IsZero() && sameSet(got.Actions, want.Actions) && sameSet(got.Indexes, want.Indexes)
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}

// apiCode is Meilisearch's error code of err ("" if Meilisearch did not answer one).
func apiCode(err error) string {
	var me *meilisearch.Error
	if errors.As(err, &me) {
		return me.MeilisearchApiError.Code
	}
	return ""
}

// withRetry runs op until it succeeds, fails for good, or ctx ends, retrying (backing off from 250 ms to 5 s)
// while Meilisearch is unreachable or answers 5xx or 429, as it does while starting. A refused master key
// (401/403) fails at once.
func withRetry[T any](ctx context.Context, log *slog.Logger, what string, op func() (T, error)) (T, error) {
	delay := 250 * time.Millisecond
	for attempt := 1; ; attempt++ {
		v, err := op()
		if err == nil || !retryable(err) {
			if code := apiCode(err); code == "invalid_api_key" || code == "missing_authorization_header" {
				err = fmt.Errorf("%s: Meilisearch refused the master key: %w", what, err)
			} else if err != nil {
				err = fmt.Errorf("%s: %w", what, err)
			}
			return v, err
		}
		if attempt == 1 || attempt%10 == 0 {
			log.Warn("Meilisearch not ready; retrying", "op", what, "attempt", attempt, "err", err)
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return v, fmt.Errorf("%s: gave up (%w): %w", what, ctx.Err(), err)
		case <-t.C:
		}
		delay = min(delay*2, 5*time.Second)
	}
}

func retryable(err error) bool {
	var me *meilisearch.Error
	if !errors.As(err, &me) {
		return false
	}
	switch me.ErrCode {
	case meilisearch.MeilisearchCommunicationError, meilisearch.MeilisearchTimeoutError:
		return true
	}
	return me.StatusCode >= 500 || me.StatusCode == http.StatusTooManyRequests
}
