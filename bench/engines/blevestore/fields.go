package blevestore

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/blevesearch/bleve/v2/analysis"
	"github.com/blevesearch/bleve/v2/analysis/token/lowercase"
	"github.com/blevesearch/bleve/v2/analysis/tokenizer/character"
	"github.com/blevesearch/bleve/v2/analysis/tokenizer/single"
	bdoc "github.com/blevesearch/bleve/v2/document"
	index "github.com/blevesearch/bleve_index_api"

	"github.com/meshtrace/meshtrace/indexer/document"
	"github.com/meshtrace/meshtrace/indexer/query"
)

// Internal bleve field names; document paths never start with "_".
const (
	sourceField = "_source" // the document's JSON, stored only
	fieldsField = "_fields" // one term per path present in the document (for EXISTS)
	textField   = "_text"   // words of the searchable values; positions jump between values
	facetPrefix = "_facet." // + a facetable path: its exact string values, with doc values, for Facet
)

// valueSep separates the values packed into the _fields and _text fields.
const valueSep = '\x00'

// valueGap is the position gap between two values of the _text field, so a phrase never spans two values.
const valueGap = 10

// filterPrefix mirrors Meilisearch, which indexes the first query.MaxValueBytes (468) bytes of a filterable
// string, after normalizing it: a longer value is found by that prefix, never by the whole value.
func filterPrefix(v string) string {
	if len(v) <= query.MaxValueBytes {
		return v
	}
	cut := query.MaxValueBytes
	for cut > 0 && !utf8.RuneStart(v[cut]) {
		cut--
	}
	return v[:cut]
}

var (
	// keywordAnalyzer indexes a (lower-cased) value as one term.
	keywordAnalyzer = &analysis.DefaultAnalyzer{Tokenizer: single.NewSingleTokenTokenizer()}
	// listAnalyzer makes one term of each valueSep-separated value.
	listAnalyzer = &analysis.DefaultAnalyzer{
		Tokenizer: character.NewCharacterTokenizer(func(r rune) bool { return r != valueSep }),
	}
	// textAnalyzer splits on every rune that is not a letter or digit and lower-cases: whole words.
	textAnalyzer = &analysis.DefaultAnalyzer{
		Tokenizer:    character.NewCharacterTokenizer(isWordRune),
		TokenFilters: []analysis.TokenFilter{lowercase.NewLowerCaseFilter()},
	}
	valuesAnalyzer = gapAnalyzer{textAnalyzer}
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

// gapAnalyzer analyzes valueSep-separated values with the wrapped analyzer and leaves a gap of valueGap
// positions between values.
type gapAnalyzer struct{ analysis.Analyzer }

func (g gapAnalyzer) Analyze(input []byte) analysis.TokenStream {
	var out analysis.TokenStream
	offset, pos := 0, 0
	for value := range bytes.SplitSeq(input, []byte{valueSep}) {
		last := pos
		for _, t := range g.Analyzer.Analyze(value) {
			t.Start += offset
			t.End += offset
			t.Position += pos
			last = t.Position
			out = append(out, t)
		}
		pos = last + valueGap
		offset += len(value) + 1
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
	facetable  map[string]bool // string paths also indexed exactly, with doc values, under facetPrefix
	seen       map[string]bool
	paths      []byte // present paths, valueSep-separated
	text       []byte // searchable values, valueSep-separated
}

func buildDocument(id string, source []byte, searchable, sortable, facetable map[string]bool) (*bdoc.Document, error) {
	dec := json.NewDecoder(bytes.NewReader(source))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	b := &builder{doc: bdoc.NewDocument(id), searchable: searchable, sortable: sortable, facetable: facetable, seen: map[string]bool{}}
	for k, v := range m {
		if k == document.OverflowField {
			continue // stored in the source only: never indexed, so its keys add no field
		}
		b.walk(k, v, searchable[k])
	}
	b.doc.AddField(bdoc.NewTextFieldCustom(fieldsField, nil, b.paths, index.IndexField, listAnalyzer))
	if len(b.text) > 0 {
		b.doc.AddField(bdoc.NewTextFieldCustom(textField, nil, b.text, index.IndexField|index.IncludeTermVectors, valuesAnalyzer))
	}
	b.doc.AddField(bdoc.NewTextFieldWithIndexingOptions(sourceField, nil, source, index.StoreField))
	return b.doc, nil
}

func (b *builder) exists(path string) {
	if !b.seen[path] {
		b.seen[path] = true
		b.paths = append(append(b.paths, path...), valueSep)
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
		b.keyword(path, filterPrefix(normalize(x)))
		if b.facetable[path] {
			b.doc.AddField(bdoc.NewTextFieldCustom(facetPrefix+path, nil, []byte(x), index.IndexField|index.DocValues, keywordAnalyzer))
		}
		if searchable {
			b.addText(x)
		}
	case bool:
		b.keyword(path, strconv.FormatBool(x))
		if searchable {
			b.addText(strconv.FormatBool(x))
		}
	case json.Number:
		if f, err := x.Float64(); err == nil {
			opts := index.IndexField
			if b.sortable[path] {
				opts |= index.DocValues
			}
			b.doc.AddField(bdoc.NewNumericFieldWithIndexingOptions(path, nil, f, opts))
		}
		if searchable {
			b.addText(x.String())
		}
	}
}

func (b *builder) keyword(path, v string) {
	b.doc.AddField(bdoc.NewTextFieldCustom(path, nil, []byte(v), index.IndexField, keywordAnalyzer))
}

func (b *builder) addText(v string) {
	b.text = append(append(b.text, v...), valueSep)
}
