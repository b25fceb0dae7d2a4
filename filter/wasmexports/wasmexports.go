// Package wasmexports rewrites the export section of a compiled WebAssembly module: it drops function
// exports and renames exports, leaving every other byte of the module as it was. The filter's build uses
// it (through filter/internal/wasmtrim) to remove the proxy-wasm callbacks the plugin does not implement
// and to declare the ABI version it targets; tests use it to make plugin variants.
//
// Only the module framing is parsed (the header, section ids and sizes, and the export section); the
// result is as valid as the input, since export names are only referred to by the host.
package wasmexports

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
)

// Kind is an export's kind byte.
type Kind byte

// Export kinds.
const (
	KindFunc   Kind = 0
	KindTable  Kind = 1
	KindMemory Kind = 2
	KindGlobal Kind = 3
	KindTag    Kind = 4
)

func (k Kind) String() string {
	switch k {
	case KindFunc:
		return "function"
	case KindTable:
		return "table"
	case KindMemory:
		return "memory"
	case KindGlobal:
		return "global"
	case KindTag:
		return "tag"
	}
	return fmt.Sprintf("kind %d", byte(k))
}

// Export is one entry of the export section.
type Export struct {
	Name  string
	Kind  Kind
	Index uint32
}

// Edit says what Rewrite changes.
type Edit struct {
	Drop   []string          // function exports to remove; each must exist and be a function
	Rename map[string]string // old name -> new name; each old name must exist, no new name may collide
}

const exportSection = 7

var magic = []byte("\x00asm\x01\x00\x00\x00")

// ErrNoExportSection is returned for a well-formed module without an export section.
var ErrNoExportSection = errors.New("wasmexports: the module has no export section")

// section is where one section's payload lies in the module.
type section struct {
	id         byte
	start, end int // the whole section, id byte included
	payload    int // start of the payload
}

// sections splits a module into its sections, checking the header and that every size fits.
func sections(wasm []byte) ([]section, error) {
	if len(wasm) < len(magic) || !bytes.Equal(wasm[:4], magic[:4]) {
		return nil, errors.New("wasmexports: not a WebAssembly module (no \\0asm magic)")
	}
	if !bytes.Equal(wasm[4:8], magic[4:]) {
		return nil, fmt.Errorf("wasmexports: unsupported WebAssembly binary version % x (want 01 00 00 00)", wasm[4:8])
	}
	var out []section
	for off := len(magic); off < len(wasm); {
		start := off
		id := wasm[off]
		off++
		size, n, err := uleb32(wasm[off:])
		if err != nil {
			return nil, fmt.Errorf("wasmexports: section %d at offset %d: size: %w", id, start, err)
		}
		off += n
		if uint64(size) > uint64(len(wasm)-off) {
			return nil, fmt.Errorf("wasmexports: section %d at offset %d is truncated: %d bytes declared, %d left",
				id, start, size, len(wasm)-off)
		}
		out = append(out, section{id: id, start: start, payload: off, end: off + int(size)})
		off += int(size)
	}
	return out, nil
}

// exportsSection finds the export section.
func exportsSection(wasm []byte) (section, error) {
	secs, err := sections(wasm)
	if err != nil {
		return section{}, err
	}
	found := -1
	for i, s := range secs {
		if s.id == exportSection {
			if found >= 0 {
				return section{}, errors.New("wasmexports: the module has two export sections")
			}
			found = i
		}
	}
	if found < 0 {
		return section{}, ErrNoExportSection
	}
	return secs[found], nil
}

// parseExports decodes an export section's payload.
func parseExports(p []byte) ([]Export, error) {
	count, off, err := uleb32(p)
	if err != nil {
		return nil, fmt.Errorf("wasmexports: export count: %w", err)
	}
	// Every entry takes at least 3 bytes, which bounds the allocation on garbage input.
	exports := make([]Export, 0, min(uint64(count), uint64(len(p)/3)))
	seen := make(map[string]bool, cap(exports))
	for i := range count {
		nameLen, n, err := uleb32(p[off:])
		if err != nil {
			return nil, fmt.Errorf("wasmexports: export %d: name length: %w", i, err)
		}
		off += n
		if uint64(nameLen) > uint64(len(p)-off) {
			return nil, fmt.Errorf("wasmexports: export %d: name is truncated", i)
		}
		name := string(p[off : off+int(nameLen)])
		off += int(nameLen)
		if off >= len(p) {
			return nil, fmt.Errorf("wasmexports: export %q: kind is truncated", name)
		}
		kind := Kind(p[off])
		off++
		index, n, err := uleb32(p[off:])
		if err != nil {
			return nil, fmt.Errorf("wasmexports: export %q: index: %w", name, err)
		}
		off += n
		if seen[name] {
			return nil, fmt.Errorf("wasmexports: export %q appears twice", name)
		}
		seen[name] = true
		exports = append(exports, Export{Name: name, Kind: kind, Index: index})
	}
	if off != len(p) {
		return nil, fmt.Errorf("wasmexports: export section has %d bytes after its %d entries", len(p)-off, count)
	}
	return exports, nil
}

// List returns the module's exports in section order.
func List(wasm []byte) ([]Export, error) {
	s, err := exportsSection(wasm)
	if err != nil {
		return nil, err
	}
	return parseExports(wasm[s.payload:s.end])
}

// Rewrite returns a copy of wasm with the export section edited as e says; the input is not modified.
// It fails, and returns nothing, if the module is malformed, has no export section, a name to drop is
// missing or not a function export, a name to rename is missing, or a new name is already taken.
func Rewrite(wasm []byte, e Edit) ([]byte, error) {
	s, err := exportsSection(wasm)
	if err != nil {
		return nil, err
	}
	exports, err := parseExports(wasm[s.payload:s.end])
	if err != nil {
		return nil, err
	}
	byName := make(map[string]Export, len(exports))
	for _, x := range exports {
		byName[x.Name] = x
	}
	drop := make(map[string]bool, len(e.Drop))
	for _, name := range e.Drop {
		x, ok := byName[name]
		switch {
		case !ok:
			return nil, fmt.Errorf("wasmexports: cannot drop %q: the module does not export it", name)
		case x.Kind != KindFunc:
			return nil, fmt.Errorf("wasmexports: cannot drop %q: it is a %s export, not a function", name, x.Kind)
		}
		drop[name] = true
	}
	for from := range e.Rename {
		if _, ok := byName[from]; !ok {
			return nil, fmt.Errorf("wasmexports: cannot rename %q: the module does not export it", from)
		}
		if drop[from] {
			return nil, fmt.Errorf("wasmexports: %q is both dropped and renamed", from)
		}
	}
	// The names after the edit must stay unique.
	names := make(map[string]bool, len(exports))
	var kept []Export
	for _, x := range exports {
		if drop[x.Name] {
			continue
		}
		if to, ok := e.Rename[x.Name]; ok {
			x.Name = to
		}
		if names[x.Name] {
			return nil, fmt.Errorf("wasmexports: the edit exports %q twice", x.Name)
		}
		names[x.Name] = true
		kept = append(kept, x)
	}

	var payload []byte
	payload = appendULEB(payload, uint32(len(kept)))
	for _, x := range kept {
		payload = appendULEB(payload, uint32(len(x.Name)))
		payload = append(payload, x.Name...)
		payload = append(payload, byte(x.Kind))
		payload = appendULEB(payload, x.Index)
	}
	out := make([]byte, 0, len(wasm)-(s.end-s.start)+len(payload)+6)
	out = append(out, wasm[:s.start]...)
	out = append(out, exportSection)
	out = appendULEB(out, uint32(len(payload)))
	out = append(out, payload...)
	out = append(out, wasm[s.end:]...)
	return out, nil
}

// Has reports whether exports has one named name.
func Has(exports []Export, name string) bool {
	return slices.ContainsFunc(exports, func(x Export) bool { return x.Name == name })
}

var errLEB = errors.New("malformed or truncated LEB128 u32")

// uleb32 decodes an unsigned LEB128 u32 (at most 5 bytes) and returns it with the bytes it took.
func uleb32(b []byte) (uint32, int, error) {
	var v uint32
	for i := 0; i < 5; i++ {
		if i >= len(b) {
			return 0, 0, errLEB
		}
		c := b[i]
		if i == 4 && c > 0x0f {
			return 0, 0, errLEB // more than 32 bits, or a continuation past the fifth byte
		}
		v |= uint32(c&0x7f) << (7 * i)
		if c&0x80 == 0 {
			return v, i + 1, nil
		}
	}
	return 0, 0, errLEB
}

func appendULEB(b []byte, v uint32) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}
