package embedded

import (
	"context"
	"testing"

	"github.com/meshtrace/meshtrace/indexer/store"
	"github.com/meshtrace/meshtrace/indexer/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestReopenKeepsDocuments(t *testing.T) {
	dir := t.TempDir()
	f := storetest.NewFixture()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Write(context.Background(), f.Spans, f.Traces); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	res, err := s.Search(context.Background(), store.Request{Index: store.Spans})
	if err != nil {
		t.Fatal(err)
	}
	if res.Total != len(f.Spans) {
		t.Errorf("after reopening: %d spans, want %d", res.Total, len(f.Spans))
	}
	tr, err := s.GetTraces(context.Background(), []string{f.Traces[0].ID})
	if err != nil || len(tr) != 1 {
		t.Errorf("after reopening: GetTraces = %v, %v", tr, err)
	}
}
