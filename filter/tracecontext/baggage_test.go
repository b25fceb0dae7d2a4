package tracecontext

import (
	"strings"
	"testing"
)

func TestParseBaggage(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []Member
	}{
		{"simple", "a=1,b=2", []Member{{Key: "a", Value: "1"}, {Key: "b", Value: "2"}}},
		{"whitespace", " a = 1 ,\tb=2 ", []Member{{Key: "a", Value: "1"}, {Key: "b", Value: "2"}}},
		{"percent", "user=J%C3%B6rg%20S", []Member{{Key: "user", Value: "Jörg S"}}},
		{"properties", "k=v;p1;p2=x", []Member{{Key: "k", Value: "v", Properties: "p1;p2=x"}}},
		{"bad member skipped", "a=1,=2,b,c=3", []Member{{Key: "a", Value: "1"}, {Key: "c", Value: "3"}}},
		{"bad escape skipped", "a=%zz,b=%4", nil},
		{"lone percent", "0=0,0=%", []Member{{Key: "0", Value: "0"}}},
		{"invalid value octet", "a=x y,b=ok", []Member{{Key: "b", Value: "ok"}}},
		{"empty value", "a=", []Member{{Key: "a", Value: ""}}},
		{"too long", strings.Repeat("a", MaxBaggageBytes+1), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := ParseBaggage(tc.in)
			if len(b.Members) != len(tc.want) {
				t.Fatalf("members = %+v, want %+v", b.Members, tc.want)
			}
			for i := range tc.want {
				if b.Members[i] != tc.want[i] {
					t.Errorf("member %d = %+v, want %+v", i, b.Members[i], tc.want[i])
				}
			}
		})
	}
}

func TestBaggageMemberLimit(t *testing.T) {
	var sb strings.Builder
	for i := 0; i < MaxBaggageMembers+20; i++ {
		sb.WriteString("k=v,")
	}
	if b := ParseBaggage(sb.String()); len(b.Members) != MaxBaggageMembers {
		t.Fatalf("members = %d, want %d", len(b.Members), MaxBaggageMembers)
	}
}

func TestBaggageDelete(t *testing.T) {
	tests := []struct {
		in, key, want string
		deleted       bool
	}{
		{"a=1,b=2,a=3;p", "a", "b=2", true},
		{"a=1,b=2", "c", "a=1,b=2", false},
		{"a=1", "a", "", true},
		{"", "a", "", false},
	}
	for _, tc := range tests {
		b := ParseBaggage(tc.in)
		if got := b.Delete(tc.key); got != tc.deleted {
			t.Errorf("Delete(%q) on %q = %v, want %v", tc.key, tc.in, got, tc.deleted)
		}
		if got := string(b.AppendTo(nil)); got != tc.want {
			t.Errorf("after Delete(%q) on %q: %q, want %q", tc.key, tc.in, got, tc.want)
		}
	}
}

func TestBaggageSet(t *testing.T) {
	b := ParseBaggage("a=1;p,b=2")
	if !b.Set("a", "x,y") || !b.Set("c", "3") {
		t.Fatal("Set failed")
	}
	if got, want := string(b.AppendTo(nil)), "a=x%2Cy,b=2,c=3"; got != want {
		t.Fatalf("AppendTo = %q, want %q", got, want)
	}
	if b.Set("bad key", "v") {
		t.Error("Set accepted an invalid key")
	}
	if b.Set("big", strings.Repeat("x", MaxBaggageBytes)) {
		t.Error("Set accepted a value beyond the size limit")
	}
	if v, ok := b.Get("a"); !ok || v != "x,y" {
		t.Errorf("Get(a) = %q, %v", v, ok)
	}
}

func FuzzParseBaggage(f *testing.F) {
	f.Add("a=1,b=2;prop")
	f.Add("user=J%C3%B6rg, x = y ")
	f.Fuzz(func(t *testing.T, v string) {
		b := ParseBaggage(v)
		if len(b.Members) > MaxBaggageMembers {
			t.Fatalf("%d members", len(b.Members))
		}
		again := ParseBaggage(string(b.AppendTo(nil)))
		if len(again.Members) != len(b.Members) {
			t.Fatalf("round trip of %q changed member count: %d != %d", v, len(again.Members), len(b.Members))
		}
		for i := range b.Members {
			if again.Members[i] != b.Members[i] {
				t.Fatalf("round trip of %q: %+v != %+v", v, again.Members[i], b.Members[i])
			}
		}
	})
}
