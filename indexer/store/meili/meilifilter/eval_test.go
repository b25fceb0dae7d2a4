package meilifilter

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func decode(t *testing.T, s string) Doc {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var obj map[string]any
	if err := dec.Decode(&obj); err != nil {
		t.Fatalf("decode %s: %v", s, err)
	}
	return Flatten(obj)
}

func TestMatch(t *testing.T) {
	docs := []string{
		/* 0 */ `{"id":"a","service":"Inventory-Service","duration":1500,"error":true,"attr":{"http.route":"/cart","customer_id":"123"}}`,
		/* 1 */ `{"id":"b","service":"checkout","duration":200,"error":false,"attr":{"customer_id":123},"services":["x","Y"]}`,
		/* 2 */ `{"id":"c","service":"","duration":null,"tags":[],"obj":{},"events":[{"name":"retry","n":1},{"name":"done","n":7}]}`,
		/* 3 */ `{"id":"d","big":9007199254740993,"long":"` + strings.Repeat("x", MaxFacetBytes+1) + `"}`,
	}
	parsed := make([]Doc, len(docs))
	for i, d := range docs {
		parsed[i] = decode(t, d)
	}
	tests := []struct {
		filter string
		want   string // ids of matching documents
	}{
		{"service = inventory-service", "a"},
		{"service = 'INVENTORY-SERVICE'", "a"},
		{"service != checkout", "acd"}, // documents without the field match !=
		{"NOT service = checkout", "acd"},
		{"duration > 1000", "a"},
		{"duration >= 200", "ab"},
		{"duration < 1500", "b"},
		{"duration <= 1500", "ab"},
		{"duration 200 TO 1500", "ab"},
		{"duration 201 TO 1499", ""},
		{"error = true", "a"},
		{"error = FALSE", "b"},
		{"attr.customer_id = 123", "ab"}, // the string "123" and the number 123
		{"attr.customer_id = '123'", "ab"},
		{"attr.customer_id > 100", "ab"}, // the number 123, and the string "123" lexicographically
		{"attr.customer_id > 1000", "a"}, // "123" > "1000" as strings
		{"service > inventory", "a"},     // strings compare after normalization ("inventory-service")
		{"service >= Inventory", "ab"},   // ... against the operand as written: "checkout" > "Inventory"
		{"error > s", "a"},               // booleans are the strings "true" and "false"
		{"duration > slow", ""},          // numbers never compare with a word
		{"duration 1500 TO x", ""},       // TO compares numbers only when both bounds are numbers
		{"attr.customer_id 100 TO 200", "ab"},
		{"attr.http.route = '/cart'", "a"},
		{"services = y", "b"},
		{"services IN [z, X]", "b"},
		{"id IN []", ""},
		{"id NOT IN [a, b]", "cd"},
		{"events.name = done", "c"},
		{"events.n > 5", "c"},
		{"duration EXISTS", "abc"}, // null counts as present
		{"duration IS NULL", "c"},
		{"duration IS NOT NULL", "abd"},
		{"service IS EMPTY", "c"},
		{"tags IS EMPTY", "c"},
		{"obj IS EMPTY", "c"},
		{"tags EXISTS", "c"},
		{"attr EXISTS", "ab"},
		{"missing NOT EXISTS", "abcd"},
		{"big = 9007199254740992", "d"}, // beyond 2^53 numbers compare as float64, as in Meilisearch
		{"long = " + strings.Repeat("x", MaxFacetBytes+1), ""},
		{"long EXISTS", "d"},
		{"(service = checkout OR duration > 1000) AND NOT error = true", "b"},
		{"service = checkout OR service = inventory-service AND error = true", "ab"},
		{"", "abcd"},
	}
	for _, tt := range tests {
		n, err := Parse(tt.filter)
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.filter, err)
			continue
		}
		var got bytes.Buffer
		for i, d := range parsed {
			if Match(n, d) {
				got.WriteByte("abcd"[i])
			}
		}
		if got.String() != tt.want {
			t.Errorf("%q matched %q, want %q", tt.filter, got.String(), tt.want)
		}
	}
}

func TestCheck(t *testing.T) {
	filterable := []string{"service", "duration", "attr"}
	tests := []struct {
		filter string
		err    string
	}{
		{"service = x AND duration > 5", ""},
		{"attr.customer_id = 1", ""},         // nested under a filterable attribute
		{"attributes = 1", "not filterable"}, // a prefix of the name is not enough
		{"NOT (name = x)", "attribute `name` is not filterable. Available filterable attributes are: `service`, `duration`, `attr`."},
		{"service IN [a] OR x EXISTS", "`x` is not filterable"},
	}
	for _, tt := range tests {
		n, err := Parse(tt.filter)
		if err != nil {
			t.Fatalf("Parse(%q): %v", tt.filter, err)
		}
		err = Check(n, filterable)
		switch {
		case tt.err == "" && err != nil:
			t.Errorf("Check(%q) = %v, want nil", tt.filter, err)
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("Check(%q) = %v, want an error containing %q", tt.filter, err, tt.err)
		}
	}
}
