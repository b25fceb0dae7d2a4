package embedded

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"unicode"

	"github.com/blevesearch/bleve/v2/analysis"
	"github.com/blevesearch/bleve/v2/analysis/token/lowercase"
	"github.com/blevesearch/bleve/v2/analysis/tokenizer/character"
	"github.com/blevesearch/bleve/v2/analysis/tokenizer/single"
	bdoc "github.com/blevesearch/bleve/v2/document"
	index "github.com/blevesearch/bleve_index_api"
)

// Internal bleve field names; document paths never start with "_".
const (
	sourceField = "_source" // the document's JSON, stored only
	fieldsField = "_fields" // one keyword term per path present in the document (for EXISTS)
	textField   = "_text"   // searchable values, one field instance per value (phrases never span two)
)

// maxFilterBytes mirrors Meilisearch, which does not index filterable values over 500 bytes.
const maxFilterBytes = 500

var (
	// keywordAnalyzer indexes a (lower-cased) value as one term.
	keywordAnalyzer = &analysis.DefaultAnalyzer{Tokenizer: single.NewSingleTokenTokenizer()}
	// textAnalyzer splits on every rune that is not a letter or digit and lower-cases: whole words.
	textAnalyzer = &analysis.DefaultAnalyzer{
		Tokenizer:    character.NewCharacterTokenizer(isWordRune),
		TokenFilters: []analysis.TokenFilter{lowercase.NewLowerCaseFilter()},
	}
)

func isWordRune(r rune) bool { return unicode.IsLetter(r) || unicode.IsDigit(r) }

// words splits free text the way searchable values are indexed.
func words(s string) []string {
	ts := textAnalyzer.Analyze([]byte(s))
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = string(t.Term)
	}
	return out
}

// normalize is how string values are compared for equality: case-insensitively.
func normalize(s string) string { return strings.ToLower(s) }

// builder turns one JSON document into a bleve document: every leaf value is indexed under its dotted path
// (strings and booleans as one lower-cased term, numbers as numeric terms), every path present is recorded
// for EXISTS, searchable values go to the text field, and the JSON is stored for retrieval.
type builder struct {
	doc        *bdoc.Document
	searchable map[string]bool // top-level paths whose values are searchable
	sortable   map[string]bool // numeric paths with doc values
	seen       map[string]bool
	textPos    uint64
}

func buildDocument(id string, source []byte, searchable, sortable map[string]bool) (*bdoc.Document, error) {
	dec := json.NewDecoder(bytes.NewReader(source))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	b := &builder{doc: bdoc.NewDocument(id), searchable: searchable, sortable: sortable, seen: map[string]bool{}}
	for k, v := range m {
		b.walk(k, v, searchable[k])
	}
	b.doc.AddField(bdoc.NewTextFieldWithIndexingOptions(sourceField, nil, source, index.StoreField))
	return b.doc, nil
}

func (b *builder) exists(path string) {
	if !b.seen[path] {
		b.seen[path] = true
		b.doc.AddField(bdoc.NewTextFieldCustom(fieldsField, nil, []byte(path), index.IndexField, keywordAnalyzer))
	}
}

func (b *builder) walk(path string, v any, searchable bool) {
	b.exists(path)
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			b.walk(path+"."+k, e, searchable || b.searchable[path+"."+k])
		}
	case []any:
		for _, e := range x {
			if _, isList := e.([]any); isList {
				continue // nested lists are not filterable in Meilisearch either
			}
			b.walk(path, e, searchable)
		}
	case string:
		if len(x) <= maxFilterBytes {
			b.keyword(path, normalize(x))
		}
		if searchable {
			b.text(x)
		}
	case bool:
		b.keyword(path, strconv.FormatBool(x))
	case json.Number:
		if f, err := x.Float64(); err == nil {
			opts := index.IndexField
			if b.sortable[path] {
				opts |= index.DocValues
			}
			b.doc.AddField(bdoc.NewNumericFieldWithIndexingOptions(path, nil, f, opts))
		}
		if searchable {
			b.text(x.String())
		}
	}
}

func (b *builder) keyword(path, v string) {
	b.doc.AddField(bdoc.NewTextFieldCustom(path, nil, []byte(v), index.IndexField, keywordAnalyzer))
}

func (b *builder) text(v string) {
	b.textPos++
	b.doc.AddField(bdoc.NewTextFieldCustom(textField, []uint64{b.textPos}, []byte(v),
		index.IndexField|index.IncludeTermVectors, textAnalyzer))
}
