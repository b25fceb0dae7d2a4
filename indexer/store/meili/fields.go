package meili

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"sync"

	"github.com/meilisearch/meilisearch-go"

	"github.com/meshtrace/meshtrace/indexer/document"
	"github.com/meshtrace/meshtrace/indexer/store"
	"github.com/meshtrace/meshtrace/indexer/tenant"
)

// fieldsIndex names the index (after IndexPrefix) that records the attribute field names of the span index.
//
// Meilisearch keeps every field name it has seen (nested objects flattened to dotted names: "attr.k",
// "events.attr.k") in one map of at most 65,535, but its stats route lists only top-level fields
// (fieldDistribution: "attr", not "attr.k"; meilisearch/meilisearch#5717), and the route listing every field
// (POST /indexes/{uid}/fields) only exists from Meilisearch 1.33. So the store records each attribute field
// name of the spans it writes, before writing them, as one document {"id": sha256 of the name, "name": ...}
// of this index; Fields reads them back, so the cap in package fieldcap survives restarts on any version.
const fieldsIndex = "fields"

// fieldsPage is the number of recorded names fetched per request.
const fieldsPage = 5000

// fieldDoc is a document of the fields index.
type fieldDoc struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// fieldRegistry is the store's view of the fields index: the names recorded so far.
type fieldRegistry struct {
	uid     string
	writeMu sync.Mutex // serializes recording, so concurrent writes do not record the same new names
	mu      sync.Mutex
	known   map[string]bool
}

func fieldDocID(name string) string {
	sum := sha256.Sum256([]byte(name))
	return hex.EncodeToString(sum[:])
}

// fieldsSchema is the settings of the fields index: nothing to filter, sort or search.
func fieldsSchema() *meilisearch.Settings {
	return &meilisearch.Settings{FilterableAttributes: []string{}, SortableAttributes: []string{}, SearchableAttributes: []string{"name"}}
}

// Fields implements store.Store: the top-level fields of the span index (from its stats, fieldDistribution)
// and the attribute field names recorded in the fields index. The names are every tenant's, read through
// routes tenant tokens do not restrict, so under a restricted tenant scope Fields fails closed
// (ErrScopeNotEnforced).
func (s *Store) Fields(ctx context.Context) ([]string, error) {
	if sc, ok := tenant.FromContext(ctx); ok && !sc.IsAll() {
		return nil, fmt.Errorf("%w: Fields lists the field names of every tenant (refused for %s)", ErrScopeNotEnforced, sc)
	}
	uid := s.uid(store.Spans)
	stats, err := retry(ctx, s, "get stats of "+uid, func() (*meilisearch.StatsIndex, error) {
		return s.client.Index(uid).GetStatsWithContext(ctx, nil)
	})
	if err != nil {
		return nil, err
	}
	names, err := s.loadFields(ctx)
	if err != nil {
		return nil, err
	}
	for f := range stats.FieldDistribution {
		if !slices.Contains(names, f) {
			names = append(names, f)
		}
	}
	return names, nil
}

// loadFields reads every recorded name from the fields index and adds them to the registry.
func (s *Store) loadFields(ctx context.Context) ([]string, error) {
	uid := s.fields.uid
	var names []string
	for offset := int64(0); ; offset += fieldsPage {
		var res meilisearch.DocumentsResult
		_, err := retry(ctx, s, "fetch documents from "+uid, func() (struct{}, error) {
			return struct{}{}, s.client.Index(uid).GetDocumentsWithContext(ctx,
				&meilisearch.DocumentsQuery{Offset: offset, Limit: fieldsPage, Fields: []string{"name"}}, &res)
		})
		if err != nil {
			return nil, err
		}
		for _, h := range res.Results {
			var d fieldDoc
			if err := h.DecodeInto(&d); err != nil {
				return nil, fmt.Errorf("meili: fetch documents from %s: %w", uid, err)
			}
			names = append(names, d.Name)
		}
		if len(res.Results) < fieldsPage {
			break
		}
	}
	s.fields.mu.Lock()
	for _, n := range names {
		s.fields.known[n] = true
	}
	s.fields.mu.Unlock()
	return names, nil
}

// recordFields records the attribute field names of spans that are not recorded yet, waiting for the task.
// Names are recorded before the spans are written, so a name may be recorded for spans that then fail to be
// written: the registry errs on the side of counting too many.
func (s *Store) recordFields(ctx context.Context, spans []document.Span) error {
	if len(s.unrecorded(spans)) == 0 {
		return nil
	}
	select {
	case <-s.stop:
		return errClosed
	default:
	}
	s.fields.writeMu.Lock()
	defer s.fields.writeMu.Unlock()
	docs := s.unrecorded(spans) // again: a concurrent write may have recorded them meanwhile
	if len(docs) == 0 {
		return nil
	}
	uid := s.fields.uid
	task, err := retry(ctx, s, "add documents to "+uid, func() (*meilisearch.TaskInfo, error) {
		return s.client.Index(uid).AddDocumentsWithContext(ctx, docs, nil)
	})
	if err != nil {
		return err
	}
	if err := s.wait(ctx, task.TaskUID); err != nil {
		return err
	}
	s.fields.mu.Lock()
	for _, d := range docs {
		s.fields.known[d.Name] = true
	}
	s.fields.mu.Unlock()
	return nil
}

// unrecorded returns the attribute field names of spans that are not recorded yet, as documents.
func (s *Store) unrecorded(spans []document.Span) []fieldDoc {
	var docs []fieldDoc
	s.fields.mu.Lock()
	defer s.fields.mu.Unlock()
	var seen map[string]bool
	for i := range spans {
		for n := range spans[i].AttributeFields() {
			if s.fields.known[n] || seen[n] {
				continue
			}
			if seen == nil {
				seen = map[string]bool{}
			}
			seen[n] = true
			docs = append(docs, fieldDoc{ID: fieldDocID(n), Name: n})
		}
	}
	return docs
}
