package wasmexports

import (
	"context"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero"
)

// module assembles a valid module with one memory, exported as "memory", and a function () -> () per
// name in funcs, exported under that name, followed by a custom section.
func module(funcs ...string) []byte {
	sec := func(b []byte, id byte, payload []byte) []byte {
		b = append(b, id)
		b = appendULEB(b, uint32(len(payload)))
		return append(b, payload...)
	}
	b := append([]byte(nil), magic...)
	b = sec(b, 1, []byte{1, 0x60, 0, 0}) // one type: () -> ()
	fns := appendULEB(nil, uint32(len(funcs)))
	for range funcs {
		fns = append(fns, 0)
	}
	b = sec(b, 3, fns)
	b = sec(b, 5, []byte{1, 0, 1}) // one memory, min 1 page
	exp := appendULEB(nil, uint32(len(funcs)+1))
	exp = appendULEB(exp, 6)
	exp = append(exp, "memory"...)
	exp = append(exp, byte(KindMemory), 0)
	for i, name := range funcs {
		exp = appendULEB(exp, uint32(len(name)))
		exp = append(exp, name...)
		exp = append(exp, byte(KindFunc))
		exp = appendULEB(exp, uint32(i))
	}
	b = sec(b, exportSection, exp)
	code := appendULEB(nil, uint32(len(funcs)))
	for range funcs {
		code = append(code, 2, 0, 0x0b) // body size 2: no locals, end
	}
	b = sec(b, 10, code)
	return sec(b, 0, append([]byte{4}, "note!"...))
}

// exported compiles wasm with wazero and returns its function exports, sorted.
func exported(t *testing.T, wasm []byte) []string {
	t.Helper()
	ctx := context.Background()
	rt := wazero.NewRuntime(ctx)
	defer rt.Close(ctx)
	m, err := rt.CompileModule(ctx, wasm)
	if err != nil {
		t.Fatalf("wazero: %v", err)
	}
	return slices.Sorted(maps.Keys(m.ExportedFunctions()))
}

func TestRewrite(t *testing.T) {
	base := module("a", "b", "old", "c")
	tests := []struct {
		name    string
		wasm    []byte
		edit    Edit
		want    []string // function exports after the edit
		wantErr string
	}{
		{name: "drop and rename", wasm: base, edit: Edit{Drop: []string{"b", "c"}, Rename: map[string]string{"old": "new"}},
			want: []string{"a", "new"}},
		{name: "no change", wasm: base, want: []string{"a", "b", "c", "old"}},
		{name: "drop everything", wasm: base, edit: Edit{Drop: []string{"a", "b", "c", "old"}}, want: []string{}},
		{name: "long names", wasm: module(strings.Repeat("x", 200), "y"), edit: Edit{Drop: []string{"y"}},
			want: []string{strings.Repeat("x", 200)}},
		{name: "missing drop", wasm: base, edit: Edit{Drop: []string{"zz"}}, wantErr: `cannot drop "zz": the module does not export it`},
		{name: "drop not a function", wasm: base, edit: Edit{Drop: []string{"memory"}}, wantErr: `"memory": it is a memory export, not a function`},
		{name: "missing rename", wasm: base, edit: Edit{Rename: map[string]string{"zz": "y"}}, wantErr: `cannot rename "zz"`},
		{name: "rename collides", wasm: base, edit: Edit{Rename: map[string]string{"old": "a"}}, wantErr: `exports "a" twice`},
		{name: "drop and rename one", wasm: base, edit: Edit{Drop: []string{"old"}, Rename: map[string]string{"old": "n"}}, wantErr: "both dropped and renamed"},
		{name: "not wasm", wasm: []byte("hello world"), wantErr: "not a WebAssembly module"},
		{name: "empty", wasm: nil, wantErr: "not a WebAssembly module"},
		{name: "version 2", wasm: append([]byte("\x00asm\x02\x00\x00\x00"), base[8:]...), wantErr: "unsupported WebAssembly binary version"},
		{name: "truncated", wasm: base[:len(base)-10], wantErr: "truncated"},
		{name: "truncated size", wasm: append(append([]byte(nil), magic...), 7, 0x80), wantErr: "LEB128"},
		{name: "no export section", wasm: append([]byte(nil), magic...), wantErr: "no export section"},
		{name: "export section garbage", wasm: append(append([]byte(nil), magic...), 7, 3, 1, 9, 'a'), wantErr: "name is truncated"},
		{name: "export section trailing bytes", wasm: append(append([]byte(nil), magic...), 7, 2, 0, 0), wantErr: "bytes after"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := slices.Clone(tc.wasm)
			out, err := Rewrite(tc.wasm, tc.edit)
			if !slices.Equal(in, tc.wasm) {
				t.Fatal("Rewrite modified its input")
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want %q", err, tc.wantErr)
				}
				if out != nil {
					t.Error("output returned with an error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := exported(t, out); !slices.Equal(got, tc.want) {
				t.Errorf("function exports = %q, want %q", got, tc.want)
			}
			// The memory export and the sections around the export section are kept.
			list, err := List(out)
			if err != nil || !Has(list, "memory") {
				t.Errorf("List = %v, %v; want the memory export kept", list, err)
			}
			if !strings.HasSuffix(string(out), "\x04note!") {
				t.Error("the trailing custom section is lost")
			}
		})
	}
}

func TestList(t *testing.T) {
	got, err := List(module("f", "g"))
	want := []Export{{"memory", KindMemory, 0}, {"f", KindFunc, 0}, {"g", KindFunc, 1}}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("List = %v, %v; want %v", got, err, want)
	}
}

func TestULEB(t *testing.T) {
	for _, v := range []uint32{0, 1, 127, 128, 300, 1<<21 - 1, 1 << 28, 1<<32 - 1} {
		b := appendULEB(nil, v)
		got, n, err := uleb32(b)
		if err != nil || got != v || n != len(b) {
			t.Errorf("uleb32(%x) = %d, %d, %v; want %d", b, got, n, err, v)
		}
	}
	for _, b := range [][]byte{{}, {0x80}, {0xff, 0xff, 0xff, 0xff, 0x10}, {0x80, 0x80, 0x80, 0x80, 0x80, 0}} {
		if _, _, err := uleb32(b); err == nil {
			t.Errorf("uleb32(%x) accepted", b)
		}
	}
}
