package meilifilter

import "strings"

// Quote renders s as a double-quoted filter value that Parse reads back as exactly s: backslashes and double
// quotes are escaped with a backslash; every other byte is written as is.
func Quote(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' || s[i] == '"' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('"')
	return b.String()
}

// String implements Node.
func (n *And) String() string { return joinTerms(n.Terms, " AND ") }

// String implements Node.
func (n *Or) String() string { return joinTerms(n.Terms, " OR ") }

// String implements Node.
func (n *Not) String() string { return "NOT (" + n.X.String() + ")" }

// String implements Node.
func (n *Cond) String() string {
	f := Quote(n.Field)
	switch n.Op {
	case Between:
		return f + " " + Quote(n.Value) + " TO " + Quote(n.To)
	case Exists:
		return f + " EXISTS"
	case IsNull:
		return f + " IS NULL"
	case IsEmpty:
		return f + " IS EMPTY"
	}
	return f + " " + n.Op.String() + " " + Quote(n.Value)
}

// String implements Node.
func (n *In) String() string {
	vals := make([]string, len(n.Values))
	for i, v := range n.Values {
		vals[i] = Quote(v)
	}
	return Quote(n.Field) + " IN [" + strings.Join(vals, ", ") + "]"
}

// String returns the operator's token.
func (o Op) String() string {
	switch o {
	case Eq:
		return "="
	case Ne:
		return "!="
	case Gt:
		return ">"
	case Ge:
		return ">="
	case Lt:
		return "<"
	case Le:
		return "<="
	case Between:
		return "TO"
	case Exists:
		return "EXISTS"
	case IsNull:
		return "IS NULL"
	case IsEmpty:
		return "IS EMPTY"
	}
	return "?"
}

func joinTerms(terms []Node, sep string) string {
	parts := make([]string, len(terms))
	for i, t := range terms {
		parts[i] = "(" + t.String() + ")"
	}
	return strings.Join(parts, sep)
}
