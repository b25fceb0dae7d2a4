package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
)

// checkpointFile holds the committed position: segment uint64 | offset int64 | crc32c of both, little-endian.
const checkpointFile = "checkpoint"

// readCheckpoint returns the committed position stored in dir; ok is false when there is none. A checkpoint
// that fails its checksum is an error (the caller replays from the oldest segment).
func readCheckpoint(dir string) (pos Position, ok bool, err error) {
	b, err := os.ReadFile(filepath.Join(dir, checkpointFile))
	if errors.Is(err, os.ErrNotExist) {
		return Position{}, false, nil
	}
	if err != nil {
		return Position{}, false, err
	}
	if len(b) != 20 || crc32.Checksum(b[:16], castagnoli) != binary.LittleEndian.Uint32(b[16:]) {
		return Position{}, false, fmt.Errorf("%w: checkpoint file %s is damaged", errCorrupt, filepath.Join(dir, checkpointFile))
	}
	return Position{Segment: binary.LittleEndian.Uint64(b[0:8]), Offset: int64(binary.LittleEndian.Uint64(b[8:16]))}, true, nil
}

// writeCheckpoint stores pos durably: a temporary file, synced, renamed over the old one, directory synced.
func writeCheckpoint(dir string, pos Position) error {
	var b [20]byte
	binary.LittleEndian.PutUint64(b[0:8], pos.Segment)
	binary.LittleEndian.PutUint64(b[8:16], uint64(pos.Offset))
	binary.LittleEndian.PutUint32(b[16:], crc32.Checksum(b[:16], castagnoli))
	tmp := filepath.Join(dir, checkpointFile+".tmp")
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(b[:])
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, checkpointFile)); err != nil {
		return err
	}
	return syncDir(dir)
}
