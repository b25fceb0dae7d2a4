package pipeline

import (
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/meshtrace/meshtrace/indexer/document"
)

// deadLetter appends what the store refused to an NDJSON file, one object per line:
//
//	{"time":"...","reason":"...","span":{...}}     a span document the store refused
//	{"time":"...","reason":"...","record":"..."}   an undecodable log record (protobuf, base64)
//
// The file grows to at most max bytes; later entries are only counted and logged.
type deadLetter struct {
	mu   sync.Mutex
	f    *os.File
	size int64
	max  int64
}

type deadEntry struct {
	Time   time.Time      `json:"time"`
	Reason string         `json:"reason"`
	Span   *document.Span `json:"span,omitempty"`
	Record []byte         `json:"record,omitempty"`
}

// openDeadLetter opens path for appending; an empty path keeps nothing.
func openDeadLetter(path string, maxBytes int64) (*deadLetter, error) {
	d := &deadLetter{max: maxBytes}
	if path == "" {
		return d, nil
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("dead-letter file: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("dead-letter file: %w", err)
	}
	d.f, d.size = f, st.Size()
	return d, nil
}

func (d *deadLetter) span(s *document.Span, reason error) {
	d.write(deadEntry{Time: time.Now().UTC(), Reason: reason.Error(), Span: s})
}

func (d *deadLetter) record(data []byte, reason error) {
	d.write(deadEntry{Time: time.Now().UTC(), Reason: reason.Error(), Record: data})
}

func (d *deadLetter) write(e deadEntry) {
	line, err := json.Marshal(e)
	if err != nil {
		return
	}
	line = append(line, '\n')
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.f == nil || d.size+int64(len(line)) > d.max {
		return
	}
	n, _ := d.f.Write(line) // best effort: the entry was logged already
	d.size += int64(n)
}

func (d *deadLetter) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.f != nil {
		d.f.Sync()
		d.f.Close()
		d.f = nil
	}
}
