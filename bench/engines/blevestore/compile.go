package blevestore

import (
	"fmt"

	"github.com/blevesearch/bleve/v2"
	bq "github.com/blevesearch/bleve/v2/search/query"

	"github.com/meshtrace/meshtrace/indexer/query"
	"github.com/meshtrace/meshtrace/indexer/store"
)

// compile translates a resolved filter into a bleve query with Meilisearch's semantics.
func compile(e query.Expr) (bq.Query, error) {
	switch x := e.(type) {
	case nil:
		return bleve.NewMatchAllQuery(), nil
	case *query.And:
		qs, err := compileAll(x.Terms)
		if err != nil {
			return nil, err
		}
		return bleve.NewConjunctionQuery(qs...), nil
	case *query.Or:
		qs, err := compileAll(x.Terms)
		if err != nil {
			return nil, err
		}
		return bleve.NewDisjunctionQuery(qs...), nil
	case *query.Not:
		inner, err := compile(x.X)
		if err != nil {
			return nil, err
		}
		b := bleve.NewBooleanQuery()
		b.AddMust(bleve.NewMatchAllQuery())
		b.AddMustNot(inner)
		return b, nil
	case *query.Exists:
		return term(fieldsField, x.Field), nil
	case *query.In:
		qs := make([]bq.Query, len(x.Values))
		for i, v := range x.Values {
			qs[i] = equal(x.Field, v)
		}
		return bleve.NewDisjunctionQuery(qs...), nil
	case *query.Compare:
		if x.Op == query.Eq {
			return equal(x.Field, x.Value), nil
		}
		if x.Op == query.Ne {
			return compile(&query.Not{X: &query.Compare{Field: x.Field, Op: query.Eq, Value: x.Value}})
		}
		if !x.Value.IsNum {
			return nil, fmt.Errorf("%w: %s needs a number, got %q", store.ErrBadRequest, x.Op, x.Value.Str)
		}
		return numRange(x.Field, x.Op, x.Value.Num), nil
	}
	return nil, fmt.Errorf("%w: unsupported filter node %T", store.ErrBadRequest, e)
}

func compileAll(es []query.Expr) ([]bq.Query, error) {
	out := make([]bq.Query, len(es))
	for i, e := range es {
		q, err := compile(e)
		if err != nil {
			return nil, err
		}
		out[i] = q
	}
	return out, nil
}

func term(field, v string) bq.Query {
	q := bleve.NewTermQuery(v)
	q.SetField(field)
	return q
}

// equal matches the value as a case-insensitive string (booleans are the strings true and false) and, when
// it reads as a number, as a number.
func equal(field string, v query.Value) bq.Query {
	t := term(field, normalize(v.Str))
	if !v.IsNum {
		return t
	}
	return bleve.NewDisjunctionQuery(t, numRange(field, query.Eq, v.Num))
}

func numRange(field string, op query.Op, n float64) bq.Query {
	yes, no := true, false
	var q *bq.NumericRangeQuery
	switch op {
	case query.Lt:
		q = bleve.NewNumericRangeInclusiveQuery(nil, &n, nil, &no)
	case query.Le:
		q = bleve.NewNumericRangeInclusiveQuery(nil, &n, nil, &yes)
	case query.Gt:
		q = bleve.NewNumericRangeInclusiveQuery(&n, nil, &no, nil)
	case query.Ge:
		q = bleve.NewNumericRangeInclusiveQuery(&n, nil, &yes, nil)
	default: // Eq
		q = bleve.NewNumericRangeInclusiveQuery(&n, &n, &yes, &yes)
	}
	q.SetField(field)
	return q
}

// textQuery requires every phrase, as whole words in order within one searchable value.
func textQuery(phrases []string) bq.Query {
	var qs []bq.Query
	for _, p := range phrases {
		ws := words(p)
		switch len(ws) {
		case 0:
			continue // nothing searchable (only punctuation): matches everything, as an empty query does
		case 1:
			qs = append(qs, term(textField, ws[0]))
		default:
			qs = append(qs, bleve.NewPhraseQuery(ws, textField))
		}
	}
	if len(qs) == 0 {
		return nil
	}
	return bleve.NewConjunctionQuery(qs...)
}
