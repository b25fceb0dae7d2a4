package meilifilter

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
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

// Match reports whether the document matches the filter. A nil filter matches every document. Check the
// filter first: Match treats an operand that is not a number as matching nothing.
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
	lo, hi := math.Inf(-1), math.Inf(1)
	loInc, hiInc := true, true
	a, errA := number(c.Value)
	switch c.Op {
	case Gt:
		lo, loInc = a, false
	case Ge:
		lo = a
	case Lt:
		hi, hiInc = a, false
	case Le:
		hi = a
	case Between:
		b, errB := number(c.To)
		if errB != nil {
			return false
		}
		lo, hi = a, b
	}
	if errA != nil || f == nil {
		return false
	}
	for _, v := range f.Values {
		x, ok := v.(float64)
		if !ok {
			continue
		}
		if (x > lo || loInc && x == lo) && (x < hi || hiInc && x == hi) {
			return true
		}
	}
	return false
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

func normalize(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

func number(s string) (float64, error) {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, fmt.Errorf("%q is not a finite number", s)
	}
	return f, nil
}

// Check validates a parsed filter against an index's filterable attributes, as Meilisearch does before
// evaluating it: every field must be filterable (an attribute or a path under one), and the operands of >,
// >=, <, <= and TO must be numbers.
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
		if err := checkField(n.Field, filterable); err != nil {
			return err
		}
		switch n.Op {
		case Gt, Ge, Lt, Le, Between:
			if _, err := number(n.Value); err != nil {
				return fmt.Errorf("operator %s on `%s` needs a number: %w", n.Op, n.Field, err)
			}
		}
		if n.Op == Between {
			if _, err := number(n.To); err != nil {
				return fmt.Errorf("operator TO on `%s` needs a number: %w", n.Field, err)
			}
		}
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
