package extract

import (
	"encoding/base64"
	"strings"
	"testing"
)

func TestCookie(t *testing.T) {
	tests := []struct {
		header, name, want string
		ok                 bool
	}{
		{"a=1; session=abc; b=2", "session", "abc", true},
		{"a=1;b=2", "b", "2", true},
		{`tenant="acme"`, "tenant", "acme", true},
		{"tenant=", "tenant", "", true},
		{"tenant", "tenant", "", false},
		{"a=1; b=2", "c", "", false},
		{"", "a", "", false},
		{"xa=1; a=2", "a", "2", true},
	}
	for _, tc := range tests {
		got, ok := Cookie(tc.header, tc.name)
		if got != tc.want || ok != tc.ok {
			t.Errorf("Cookie(%q, %q) = %q, %v; want %q, %v", tc.header, tc.name, got, ok, tc.want, tc.ok)
		}
	}
}

func TestQuery(t *testing.T) {
	tests := []struct {
		path, name, want string
		ok               bool
	}{
		{"/orders?customer=42&x=1", "customer", "42", true},
		{"/orders?x=1&customer=a%20b+c", "customer", "a b c", true},
		{"/orders?customer=%zz", "customer", "", false},
		{"/orders?customer", "customer", "", true},
		{"/orders#customer=1", "customer", "", false},
		{"/orders?a=1#customer=1", "customer", "", false},
		{"/orders", "customer", "", false},
		{"/orders?cust%6fmer=7", "customer", "7", true},
	}
	for _, tc := range tests {
		got, ok := Query(tc.path, tc.name)
		if got != tc.want || ok != tc.ok {
			t.Errorf("Query(%q, %q) = %q, %v; want %q, %v", tc.path, tc.name, got, ok, tc.want, tc.ok)
		}
	}
}

func token(payload string) string {
	enc := base64.RawURLEncoding
	return enc.EncodeToString([]byte(`{"alg":"none"}`)) + "." + enc.EncodeToString([]byte(payload)) + ".sig"
}

func TestJWTClaim(t *testing.T) {
	payload := `{"sub":"user-1","tenant":"acme","age":42,"admin":true,"off":false,"roles":["a"],"n":null}`
	auth := "Bearer " + token(payload)
	tests := []struct {
		auth, claim, want string
		ok                bool
	}{
		{auth, "tenant", "acme", true},
		{"bearer " + token(payload), "sub", "user-1", true},
		{auth, "age", "42", true},
		{auth, "admin", "true", true},
		{auth, "off", "false", true},
		{auth, "roles", "", false},
		{auth, "n", "", false},
		{auth, "missing", "", false},
		{"Basic dXNlcjpwdw==", "sub", "", false},
		{"Bearer abc", "sub", "", false},
		{"Bearer a.!!!.c", "sub", "", false},
		{"Bearer a.b.c.d", "sub", "", false},
		{"Bearer " + token(`[1,2]`), "sub", "", false},
		{"Bearer " + token(`{"sub":"x"`), "sub", "", false},
		{"Bearer " + strings.Repeat("a", maxJWTBytes) + "." + token(payload), "sub", "", false},
		{"Bearer " + base64.RawURLEncoding.EncodeToString([]byte(`{}`)) + "." +
			base64.URLEncoding.EncodeToString([]byte(`{"sub":"padded"}`)) + ".s", "sub", "padded", true},
	}
	for _, tc := range tests {
		got, ok := JWTClaim(tc.auth, tc.claim)
		if got != tc.want || ok != tc.ok {
			t.Errorf("JWTClaim(%.30q, %q) = %q, %v; want %q, %v", tc.auth, tc.claim, got, ok, tc.want, tc.ok)
		}
	}
}

func FuzzCookie(f *testing.F) {
	f.Add("a=1; session=abc", "session")
	f.Add(`t="x"`, "t")
	f.Fuzz(func(t *testing.T, header, name string) {
		if v, ok := Cookie(header, name); ok && len(v) > len(header) {
			t.Fatalf("value longer than header")
		}
	})
}

func FuzzQuery(f *testing.F) {
	f.Add("/p?a=1&b=%20x+y", "b")
	f.Fuzz(func(t *testing.T, path, name string) {
		if v, ok := Query(path, name); ok && len(v) > len(path) {
			t.Fatalf("value longer than path")
		}
	})
}

func FuzzJWTClaim(f *testing.F) {
	f.Add("Bearer "+token(`{"sub":"user-1","n":1}`), "sub")
	f.Add("Bearer a.b.c", "x")
	f.Fuzz(func(t *testing.T, auth, claim string) {
		if v, ok := JWTClaim(auth, claim); ok && len(v) > len(auth) {
			t.Fatalf("claim longer than token")
		}
	})
}
