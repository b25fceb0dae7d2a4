package percent

import "testing"

func TestDecode(t *testing.T) {
	tests := []struct {
		in          string
		plusIsSpace bool
		want        string
		ok          bool
	}{
		{"plain", false, "plain", true},
		{"a%20b", false, "a b", true},
		{"a+b", false, "a+b", true},
		{"a+b", true, "a b", true},
		{"%41%6a%6A", false, "Ajj", true},
		{"%", false, "", false},
		{"%4", false, "", false},
		{"ab%4", true, "", false},
		{"%zz", false, "", false},
		{"%e2%82%ac", false, "€", true},
	}
	for _, tc := range tests {
		got, ok := Decode(tc.in, tc.plusIsSpace)
		if got != tc.want || ok != tc.ok {
			t.Errorf("Decode(%q, %v) = %q, %v; want %q, %v", tc.in, tc.plusIsSpace, got, ok, tc.want, tc.ok)
		}
	}
}
