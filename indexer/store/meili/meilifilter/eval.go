package meilifilter

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"golang.org/x/text/unicode/norm"
)

// MaxFacetBytes is the longest string value that equality can match: Meilisearch does not index longer
// filterable values.
const MaxFacetBytes = 500

// Field is what a flattened document holds under one attribute path.
type Field struct {
	Values []any // scalars found at the path (inside arrays too): string, float64 or bool
	Null   bool  // the path holds null
	Empty  bool  // the path holds "", [] or {}
}

// Doc is a document flattened the way Meilisearch flattens documents for filtering: nested object keys are
// joined with dots ({"a": {"b.c": 1}} gives "a.b.c") and arrays contribute each of their elements.
type Doc map[string]*Field

// Flatten flattens a decoded JSON object. Numbers may be float64 or json.Number.
func Flatten(obj map[string]any) Doc {
	d := Doc{}
	for k, v := range obj {
		d.walk(k, v, false)
	}
	return d
}

func (d Doc) field(path string) *Field {
	f := d[path]
	if f == nil {
		f = &Field{}
		d[path] = f
	}
	return f
}

func (d Doc) walk(path string, v any, inArray bool) {
	f := d.field(path)
	switch x := v.(type) {
	case nil:
		if !inArray {
			f.Null = true
		}
	case map[string]any:
		if len(x) == 0 && !inArray {
			f.Empty = true
		}
		for k, c := range x {
			d.walk(path+"."+k, c, false)
		}
	case []any:
		if len(x) == 0 && !inArray {
			f.Empty = true
		}
		for _, c := range x {
			d.walk(path, c, true)
		}
	case string:
		if x == "" && !inArray {
			f.Empty = true
		}
		f.Values = append(f.Values, x)
	case json.Number:
		if n, err := x.Float64(); err == nil {
			f.Values = append(f.Values, n)
		}
	case float64:
		f.Values = append(f.Values, x)
	case bool:
		f.Values = append(f.Values, x)
	}
}

// Match reports whether the document matches the filter. A nil filter matches every document.
func Match(n Node, d Doc) bool {
	switch n := n.(type) {
	case nil:
		return true
	case *And:
		for _, t := range n.Terms {
			if !Match(t, d) {
				return false
			}
		}
		return true
	case *Or:
		for _, t := range n.Terms {
			if Match(t, d) {
				return true
			}
		}
		return false
	case *Not:
		return !Match(n.X, d)
	case *In:
		f := d[n.Field]
		for _, v := range n.Values {
			if f.equals(v) {
				return true
			}
		}
		return false
	case *Cond:
		return n.match(d[n.Field])
	}
	return false
}

func (c *Cond) match(f *Field) bool {
	switch c.Op {
	case Eq:
		return f.equals(c.Value)
	case Ne:
		return !f.equals(c.Value)
	case Exists:
		return f != nil
	case IsNull:
		return f != nil && f.Null
	case IsEmpty:
		return f != nil && f.Empty
	}
	if f == nil {
		return false
	}
	// Ranges, as Meilisearch 1.15 and later evaluate them: numbers against the operand read as a number (when
	// it is one), and strings -- normalized -- against the operand as written, lexicographically.
	lo, hi := bound{}, bound{}
	switch c.Op {
	case Gt:
		lo = bound{set: true, v: c.Value}
	case Ge:
		lo = bound{set: true, incl: true, v: c.Value}
	case Lt:
		hi = bound{set: true, v: c.Value}
	case Le:
		hi = bound{set: true, incl: true, v: c.Value}
	case Between:
		lo = bound{set: true, incl: true, v: c.Value}
		hi = bound{set: true, incl: true, v: c.To}
	}
	numLo, errLo := number(lo.v)
	numHi, errHi := number(hi.v)
	numeric := (!lo.set || errLo == nil) && (!hi.set || errHi == nil)
	for _, v := range f.Values {
		switch x := v.(type) {
		case float64:
			if numeric && lo.admits(cmpFloat(x, numLo)) && hi.admits(-cmpFloat(x, numHi)) {
				return true
			}
		case string:
			if len(x) <= MaxFacetBytes && inStrings(normalize(x), lo, hi) {
				return true
			}
		case bool:
			if inStrings(strconv.FormatBool(x), lo, hi) {
				return true
			}
		}
	}
	return false
}

// bound is one end of a range; an unset bound admits everything.
type bound struct {
	set, incl bool
	v         string
}

// admits reports whether a value comparing as c (-1, 0, 1) to the bound is inside it, for a lower bound
// (for an upper bound, pass -c).
func (b bound) admits(c int) bool { return !b.set || c > 0 || c == 0 && b.incl }

func inStrings(s string, lo, hi bound) bool {
	return lo.admits(strings.Compare(s, lo.v)) && hi.admits(-strings.Compare(s, hi.v))
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// equals reports whether any value of f equals v: as numbers when v reads as one, and as strings compared
// case-insensitively (booleans compare as "true" and "false").
func (f *Field) equals(v string) bool {
	if f == nil {
		return false
	}
	num, numErr := number(v)
	norm := normalize(v)
	for _, x := range f.Values {
		switch x := x.(type) {
		case float64:
			if numErr == nil && x == num {
				return true
			}
		case bool:
			if norm == strconv.FormatBool(x) {
				return true
			}
		case string:
			if len(x) <= MaxFacetBytes && normalize(x) == norm {
				return true
			}
		}
	}
	return false
}

// normalize is Meilisearch's facet normalization: trimmed, NFKD-decomposed, lower-cased.
func normalize(s string) string { return strings.ToLower(norm.NFKD.String(strings.TrimSpace(s))) }

func number(s string) (float64, error) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, fmt.Errorf("%q is not a finite number", s)
	}
	return f, nil
}

// Check validates a parsed filter against an index's filterable attributes, as Meilisearch does before
// evaluating it: every field must be filterable (an attribute or a path under one).
func Check(n Node, filterable []string) error {
	switch n := n.(type) {
	case *And:
		for _, t := range n.Terms {
			if err := Check(t, filterable); err != nil {
				return err
			}
		}
	case *Or:
		for _, t := range n.Terms {
			if err := Check(t, filterable); err != nil {
				return err
			}
		}
	case *Not:
		return Check(n.X, filterable)
	case *In:
		return checkField(n.Field, filterable)
	case *Cond:
		return checkField(n.Field, filterable)
	}
	return nil
}

func checkField(field string, filterable []string) error {
	if Covered(field, filterable) {
		return nil
	}
	quoted := make([]string, len(filterable))
	for i, a := range filterable {
		quoted[i] = "`" + a + "`"
	}
	return fmt.Errorf("attribute `%s` is not filterable. Available filterable attributes are: %s.",
		field, strings.Join(quoted, ", "))
}

// Covered reports whether path is one of attrs or lies under one of them (attrs "a" covers "a.b").
func Covered(path string, attrs []string) bool {
	for _, a := range attrs {
		if a == "*" || path == a || strings.HasPrefix(path, a+".") {
			return true
		}
	}
	return false
}
