package meili

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/meilisearch/meilisearch-go"

	"github.com/meshtrace/meshtrace/indexer/store"
)

// APIError is an error answered by Meilisearch to a request.
type APIError struct {
	Op      string // what the store was doing, e.g. "search meshtrace-spans"
	Status  int    // HTTP status
	Code    string // Meilisearch error code, e.g. "invalid_search_filter"
	Message string // Meilisearch's message
}

// Error returns "meili: OP: MESSAGE (CODE, HTTP STATUS)".
func (e *APIError) Error() string {
	return fmt.Sprintf("meili: %s: %s (%s, HTTP %d)", e.Op, e.Message, e.Code, e.Status)
}

// Is makes a search refused as invalid (400 invalid_search_*) match store.ErrBadRequest.
func (e *APIError) Is(target error) bool {
	return target == store.ErrBadRequest && e.Status == http.StatusBadRequest && strings.HasPrefix(e.Code, "invalid_search_")
}

// TaskError reports a task that Meilisearch processed and failed.
type TaskError struct {
	TaskUID int64  // Meilisearch's task uid
	Type    string // task type, e.g. "documentAdditionOrUpdate"
	Index   string // index uid
	Code    string // Meilisearch error code, e.g. "invalid_document_id"
	Message string // Meilisearch's message
}

// Error names the task, its index and Meilisearch's message and code.
func (e *TaskError) Error() string {
	return fmt.Sprintf("meili: %s task %d on index %s failed: %s (%s)", e.Type, e.TaskUID, e.Index, e.Message, e.Code)
}

// retry runs op, retrying with exponential backoff while Meilisearch is unreachable or answers a transient
// status (5xx, 429), for at most Config.RetryFor. Other errors are returned at once, translated to APIError.
func retry[T any](ctx context.Context, s *Store, what string, op func() (T, error)) (T, error) {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = s.cfg.RetryInitial
	b.MaxInterval = 10 * time.Second
	attempt := 0
	return backoff.Retry(ctx, func() (T, error) {
		attempt++
		v, err := op()
		if err == nil {
			return v, nil
		}
		if ctx.Err() != nil {
			return v, backoff.Permanent(ctx.Err())
		}
		err = translate(what, err)
		if !transient(err) {
			return v, backoff.Permanent(err)
		}
		return v, err
	}, backoff.WithBackOff(b), backoff.WithMaxElapsedTime(s.cfg.RetryFor),
		backoff.WithNotify(func(err error, next time.Duration) {
			s.log.Warn("meilisearch request failed, retrying", "op", what, "attempt", attempt, "in", next, "err", err)
		}))
}

// translate turns a meilisearch-go error into an APIError (answered by Meilisearch) or a wrapped transport
// error.
func translate(what string, err error) error {
	var me *meilisearch.Error
	if !errors.As(err, &me) {
		return fmt.Errorf("meili: %s: %w", what, err)
	}
	switch me.ErrCode {
	case meilisearch.MeilisearchApiError, meilisearch.MeilisearchApiErrorWithoutMessage:
		msg := me.MeilisearchApiError.Message
		if me.MeilisearchApiError.Code == "" {
			msg = me.ResponseToString
		}
		return &APIError{Op: what, Status: me.StatusCode, Code: me.MeilisearchApiError.Code, Message: msg}
	case meilisearch.MeilisearchCommunicationError, meilisearch.MeilisearchTimeoutError:
		if me.OriginError != nil {
			return &unreachable{what: what, err: me.OriginError}
		}
	}
	return fmt.Errorf("meili: %s: %w", what, err)
}

// unreachable is a transport failure: Meilisearch could not be reached or did not answer.
type unreachable struct {
	what string
	err  error
}

func (e *unreachable) Error() string {
	return fmt.Sprintf("meili: %s: meilisearch unreachable: %v", e.what, e.err)
}
func (e *unreachable) Unwrap() error { return e.err }

func transient(err error) bool {
	var u *unreachable
	if errors.As(err, &u) {
		return true
	}
	var ae *APIError
	return errors.As(err, &ae) && (ae.Status >= 500 || ae.Status == http.StatusTooManyRequests)
}

// wait polls a task until it is finished, backing off from 5ms to 250ms between polls, and returns a
// TaskError if it failed or was canceled.
func (s *Store) wait(ctx context.Context, uid int64) error {
	interval := 5 * time.Millisecond
	for {
		t, err := retry(ctx, s, fmt.Sprintf("get task %d", uid), func() (*meilisearch.Task, error) {
			return s.client.GetTaskWithContext(ctx, uid)
		})
		if err != nil {
			return err
		}
		switch t.Status {
		case meilisearch.TaskStatusSucceeded:
			return nil
		case meilisearch.TaskStatusFailed, meilisearch.TaskStatusCanceled:
			msg, code := t.Error.Message, t.Error.Code
			if t.Status == meilisearch.TaskStatusCanceled {
				msg, code = fmt.Sprintf("canceled by task %d", t.CanceledBy), "task_canceled"
			}
			return &TaskError{TaskUID: uid, Type: string(t.Type), Index: t.IndexUID, Code: code, Message: msg}
		}
		timer := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			timer.Stop()
			return ctx.Err()
		case <-timer.C:
		}
		interval = min(interval*2, 250*time.Millisecond)
	}
}

// getJSON GETs path from Meilisearch with the index management key and decodes the JSON answer: for the
// routes whose answers meilisearch-go cannot decode (settings holding granular filterable rules). A refusal
// is an APIError and a transport failure unreachable, so retry treats them like the client's.
func (s *Store) getJSON(ctx context.Context, path string) (any, error) {
	return s.getJSONWith(ctx, s.cfg.APIKey, path, "GET "+path)
}

// getJSONWith is getJSON with key (none if empty) instead of the index management key; errors name the
// request what (so that a path holding a key never reaches an error message or a log).
func (s *Store) getJSONWith(ctx context.Context, key, path, what string) (any, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(s.cfg.URL, "/")+path, nil)
	if err != nil {
		return nil, err
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := s.cfg.HTTPClient.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // without the URL, which may hold a key
		}
		return nil, &unreachable{what: what, err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, &unreachable{what: what, err: err}
	}
	if resp.StatusCode != http.StatusOK {
		var me struct{ Message, Code string }
		if json.Unmarshal(body, &me) != nil || me.Message == "" {
			me.Message = string(body)
		}
		return nil, &APIError{Op: what, Status: resp.StatusCode, Code: me.Code, Message: me.Message}
	}
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		return nil, fmt.Errorf("meili: %s: %w", what, err)
	}
	return v, nil
}
