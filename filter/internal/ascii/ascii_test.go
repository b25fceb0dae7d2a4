package ascii

import "testing"

func TestIsToken(t *testing.T) {
	for _, s := range []string{"a", "Customer_ID", "x-b3-traceid", "!#$%&'*+-.^_`|~09azAZ"} {
		if !IsToken(s) {
			t.Errorf("IsToken(%q) = false", s)
		}
	}
	for _, s := range []string{"", "a b", "a=b", "a,b", "a;b", "\"a\"", "a\x00", "a\x7f", "é", "a/b", "a:b", "(a)", "[a]", "{a}", "a@b", "a?b", "a\\b"} {
		if IsToken(s) {
			t.Errorf("IsToken(%q) = true", s)
		}
	}
	// Every byte value against the RFC 7230 tchar set.
	for c := 0; c < 256; c++ {
		want := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		switch c {
		case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
			want = true
		}
		if got := IsToken(string([]byte{byte(c)})); got != want {
			t.Errorf("IsToken(%q) = %v, want %v", byte(c), got, want)
		}
	}
}
