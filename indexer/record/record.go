// Package record is the format of a write-ahead log record: one accepted OTLP export request
// (an ExportTraceServiceRequest in protobuf) and the tenant it was accepted for.
//
// A record of the empty tenant is the request's protobuf bytes as they are, which is also what every record
// was before tenancy, so logs written earlier replay unchanged. A record of a tenant starts with a zero byte,
// which no protobuf message can start with (field number 0 is invalid, and the receiver refuses such bodies),
// then the format version (1), the tenant's length in one byte and the tenant, then the protobuf bytes. So
// a client cannot make a record that reads as another tenant's.
package record

import (
	"errors"
	"fmt"

	"github.com/meshtrace/meshtrace/indexer/tenant"
)

const (
	marker  = 0x00
	version = 0x01
)

// Header returns what precedes the request in the record of tenant t (checked with tenant.Check unless
// empty): nothing for the empty tenant. The record is the header followed by the request: the log takes the
// two as parts of one record (wal.WAL.Append), so the request is not copied to make it.
func Header(t string) []byte {
	if t == "" {
		return nil
	}
	return append([]byte{marker, version, byte(len(t))}, t...)
}

// Encode returns the record of request otlp accepted for tenant t: Header(t) then otlp, in a new slice
// (otlp itself for the empty tenant).
func Encode(t string, otlp []byte) []byte {
	if t == "" {
		return otlp
	}
	return append(Header(t), otlp...)
}

// ErrFormat marks a record that is not in this format.
var ErrFormat = errors.New("record: not a write-ahead log record")

// Decode splits a record into its tenant and request; otlp aliases rec.
func Decode(rec []byte) (t string, otlp []byte, err error) {
	if len(rec) == 0 || rec[0] != marker {
		return "", rec, nil
	}
	if len(rec) < 3 || rec[1] != version {
		return "", nil, fmt.Errorf("%w: unknown header % x", ErrFormat, rec[:min(len(rec), 3)])
	}
	n := int(rec[2])
	if len(rec) < 3+n {
		return "", nil, fmt.Errorf("%w: a tenant of %d bytes does not fit in %d", ErrFormat, n, len(rec))
	}
	t = string(rec[3 : 3+n])
	if err := tenant.Check(t); err != nil {
		return "", nil, fmt.Errorf("%w: %v", ErrFormat, err)
	}
	return t, rec[3+n:], nil
}
