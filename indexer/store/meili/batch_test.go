package meili

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/indexer/document"
	"github.com/meshtrace/meshtrace/indexer/store"
)

func TestBatcherAdd(t *testing.T) {
	// Lines are 10 bytes each ("doc-0000\n" plus one byte of padding).
	line := func(i int) string { return fmt.Sprintf("doc-%04d \n", i) }
	tests := []struct {
		name              string
		writes            []int // documents per add call
		maxDocs, maxBytes int
		want              []int // documents per batch, sealed then open
	}{
		{"one write fits", []int{5}, 10, 1000, []int{5}},
		{"writes share a batch", []int{3, 4}, 10, 1000, []int{7}},
		{"doc limit splits", []int{25}, 10, 1000, []int{10, 10, 5}},
		{"byte limit splits", []int{7}, 100, 30, []int{3, 3, 1}},
		{"a full batch is sealed at once", []int{10, 1}, 10, 1000, []int{10, 1}},
		{"oversized line goes alone", []int{2}, 10, 5, []int{1, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &batcher{s: &Store{cfg: Config{MaxBatchDocs: tt.maxDocs, Linger: time.Hour}}, maxBytes: tt.maxBytes,
				wake: make(chan struct{}, 1)}
			var all strings.Builder
			n := 0
			for _, w := range tt.writes {
				l := &lines{}
				var buf bytes.Buffer
				for range w {
					buf.WriteString(line(n))
					all.WriteString(line(n))
					l.ends = append(l.ends, buf.Len())
					l.ids = append(l.ids, fmt.Sprint(n))
					n++
				}
				l.buf = buf.Bytes()
				got, err := b.add(l)
				if err != nil {
					t.Fatal(err)
				}
				docs := 0
				for _, x := range got {
					docs += len(x.docs)
				}
				if docs < w {
					t.Errorf("add of %d documents returned batches holding %d", w, docs)
				}
			}
			batches := append([]*batch(nil), b.sealed...)
			if b.open != nil {
				batches = append(batches, b.open)
			}
			var sizes []int
			var joined strings.Builder
			for _, x := range batches {
				if x.bytes != len(x.payload()) {
					t.Errorf("batch counts %d bytes but holds %d", x.bytes, len(x.payload()))
				}
				sizes = append(sizes, len(x.docs))
				joined.Write(x.payload())
			}
			if fmt.Sprint(sizes) != fmt.Sprint(tt.want) {
				t.Errorf("batches %v, want %v", sizes, tt.want)
			}
			if joined.String() != all.String() {
				t.Errorf("batches lost or reordered documents")
			}
		})
	}
}

// TestBatcherCoalesces checks that a coalescing batcher keeps one document per id in its open batch, the
// latest in the place of the first, and leaves sealed batches alone.
func TestBatcherCoalesces(t *testing.T) {
	b := &batcher{s: &Store{cfg: Config{MaxBatchDocs: 3, Linger: time.Hour}}, maxBytes: 1 << 20,
		wake: make(chan struct{}, 1), coalesce: true}
	add := func(docs ...string) { // docs are "id:version"
		t.Helper()
		l := &lines{}
		for _, d := range docs {
			l.buf = append(l.buf, d+"\n"...)
			l.ends = append(l.ends, len(l.buf))
			l.ids = append(l.ids, strings.Split(d, ":")[0])
		}
		if _, err := b.add(l); err != nil {
			t.Fatal(err)
		}
	}
	add("a:1", "b:1")
	add("a:2", "b:2")        // both replaced in place
	add("c:1", "a:3", "d:1") // c fills the batch (3 documents): it is sealed; a:3 and d open the next
	add("a:4")
	var got []string
	for _, x := range append(b.sealed, b.open) {
		got = append(got, strings.TrimSpace(strings.ReplaceAll(string(x.payload()), "\n", " ")))
	}
	want := []string{"a:2 b:2 c:1", "a:4 d:1"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("batches %q, want %q", got, want)
	}
	if b.coalesced != 3 {
		t.Errorf("coalesced = %d, want 3", b.coalesced)
	}
}

func TestEncodeChecksIDs(t *testing.T) {
	for id, ok := range map[string]bool{
		"0123abcd-00ff": true, "A_b-9": true, strings.Repeat("a", 511): true,
		"": false, strings.Repeat("a", 512): false, "a b": false, "a/b": false, "é": false, "a.b": false,
	} {
		_, err := encodeSpans([]document.Span{{ID: id}})
		if (err == nil) != ok || (err != nil && !errors.Is(err, store.ErrBadRequest)) {
			t.Errorf("encodeSpans with id %q: err = %v, want ok=%v (else ErrBadRequest)", id, err, ok)
		}
	}
}
