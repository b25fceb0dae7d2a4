package kafka

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"io"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

// errLimit reports that a batch decompresses to more than Config.MaxDecompressedBytes; the output so far is
// still returned.
var errLimit = errors.New("kafka: decompressed batch exceeds the limit")

// xerialMagic starts snappy data framed the way the Java client writes it.
var xerialMagic = []byte{0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0}

// codecState holds the decompressors of one decoder, created on first use and reused.
type codecState struct {
	src  bytes.Reader
	gzip *gzip.Reader
	zstd *zstd.Decoder
}

// decompress decompresses one batch's records into the decoder's scratch buffer.
func (d *Decoder) decompress(codec Codec, src []byte) ([]byte, error) {
	limit := min(d.cfg.MaxDecompressedBytes, d.inflateBudget)
	if limit <= 0 {
		return nil, errLimit
	}
	out, err := d.inflate(codec, src, limit)
	d.inflateBudget -= len(out)
	return out, err
}

func (d *Decoder) inflate(codec Codec, src []byte, limit int) ([]byte, error) {
	c := &d.codecs
	c.src.Reset(src)
	var out []byte
	var err error
	switch codec {
	case CodecGzip:
		if c.gzip == nil {
			c.gzip, err = gzip.NewReader(&c.src)
		} else {
			err = c.gzip.Reset(&c.src)
		}
		if err == nil {
			out, err = readLimited(d.scratch[:0], c.gzip, limit)
		}
	case CodecSnappy:
		out, err = unsnappy(d.scratch[:0], src, limit)
	case CodecLZ4:
		out, err = unlz4(d.scratch[:0], src, limit)
	case CodecZstd:
		if c.zstd == nil {
			c.zstd, err = newZstd()
		}
		if err == nil {
			out, err = unzstd(c.zstd, d.scratch[:0], src, limit)
		}
	default:
		return nil, errors.New("kafka: unknown compression codec")
	}
	if cap(out) > cap(d.scratch) {
		d.scratch = out[:0]
	}
	return out, err
}

// zstdMaxWindow is the largest window a zstd frame may declare: zstd's own default limit for decoders
// (window log 27), which covers every level Kafka producers may set (up to 22). It costs no memory here:
// DecodeAll uses its output as the window, and the output is bounded by the limit.
const zstdMaxWindow = 1 << 27

// newZstd makes the zstd decoder of one connection: single-threaded, decoding only into a buffer whose
// capacity bounds the output.
func newZstd() (*zstd.Decoder, error) {
	return zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxWindow(zstdMaxWindow), zstd.WithDecoderMaxMemory(zstdMaxWindow),
		zstd.WithDecodeAllCapLimit(true))
}

// unzstd decodes src into dst, at most limit bytes. The window a frame declares (librdkafka's and the Java
// client's are often larger than the limit) is allowed up to zstdMaxWindow; the output is what is bounded,
// by the capacity DecodeAll may fill, so dst starts at a guess from the input and grows by doubling up to
// limit, decoding again each time it was too small.
func unzstd(dec *zstd.Decoder, dst, src []byte, limit int) ([]byte, error) {
	size := min(max(cap(dst), 16*len(src), 64<<10), limit)
	for {
		if cap(dst) < size {
			dst = make([]byte, 0, size)
		}
		out, err := dec.DecodeAll(src, dst[:0:size])
		if !errors.Is(err, zstd.ErrDecoderSizeExceeded) {
			return out, err
		}
		if size >= limit {
			return out, errLimit
		}
		size = min(2*size, limit)
	}
}

// readLimited appends r's output to dst, stopping at limit bytes.
func readLimited(dst []byte, r io.Reader, limit int) ([]byte, error) {
	for {
		if len(dst) >= limit {
			return dst, errLimit
		}
		if len(dst) == cap(dst) {
			grown := min(max(2*cap(dst), 4096), limit)
			dst = append(dst, make([]byte, grown-len(dst))...)[:len(dst)]
		}
		n, err := r.Read(dst[len(dst):min(cap(dst), limit)])
		dst = dst[:len(dst)+n]
		if err == io.EOF {
			return dst, nil
		}
		if err != nil {
			return dst, err
		}
	}
}

// unsnappy decodes a raw snappy block or xerial-framed snappy chunks.
func unsnappy(dst, src []byte, limit int) ([]byte, error) {
	if !bytes.HasPrefix(src, xerialMagic) {
		return unsnappyBlock(dst, src, limit)
	}
	if len(src) < len(xerialMagic)+8 {
		return dst, errShort
	}
	src = src[len(xerialMagic)+8:] // version and compatible version
	for len(src) > 0 {
		if len(src) < 4 {
			return dst, errShort
		}
		n := int(binary.BigEndian.Uint32(src))
		src = src[4:]
		if n > len(src) {
			return dst, errShort
		}
		var err error
		if dst, err = unsnappyBlock(dst, src[:n], limit); err != nil {
			return dst, err
		}
		src = src[n:]
	}
	return dst, nil
}

func unsnappyBlock(dst, block []byte, limit int) ([]byte, error) {
	n, err := s2.DecodedLen(block)
	if err != nil {
		return dst, err
	}
	if len(dst)+n > limit {
		return dst, errLimit
	}
	if cap(dst)-len(dst) < n {
		dst = append(make([]byte, 0, len(dst)+n), dst...)
	}
	out, err := s2.Decode(dst[len(dst):len(dst)+n], block)
	if err != nil {
		return dst, err
	}
	return dst[:len(dst)+len(out)], nil
}

// LZ4 frame format constants (lz4 Frame Format Description 1.6.x).
const (
	lz4Magic           = 0x184D2204
	lz4FlagContentSize = 0x08
	lz4FlagContentSum  = 0x04
	lz4FlagBlockSum    = 0x10
	lz4FlagDictID      = 0x01
	lz4Uncompressed    = 0x80000000
)

// unlz4 decodes an LZ4 frame block by block. (lz4.Reader would be simpler, but it starts goroutines, which the
// TinyGo build without a scheduler cannot have.)
func unlz4(dst, src []byte, limit int) ([]byte, error) {
	if len(src) < 7 || binary.LittleEndian.Uint32(src) != lz4Magic {
		return dst, errors.New("kafka: not an lz4 frame")
	}
	flags := src[4]
	header := 7 // magic, FLG, BD, header checksum
	if flags&lz4FlagContentSize != 0 {
		header += 8
	}
	if flags&lz4FlagDictID != 0 {
		header += 4
	}
	if len(src) < header {
		return dst, errShort
	}
	src = src[header:]
	for {
		if len(src) < 4 {
			return dst, errShort
		}
		size := binary.LittleEndian.Uint32(src)
		src = src[4:]
		if size == 0 {
			return dst, nil // end mark (a content checksum may follow)
		}
		raw := size&lz4Uncompressed != 0
		n := int(size &^ lz4Uncompressed)
		if n > len(src) {
			return dst, errShort
		}
		block := src[:n]
		src = src[n:]
		if flags&lz4FlagBlockSum != 0 {
			if len(src) < 4 {
				return dst, errShort
			}
			src = src[4:]
		}
		if raw {
			if len(dst)+n > limit {
				return dst, errLimit
			}
			dst = append(dst, block...)
			continue
		}
		var err error
		if dst, err = unlz4Block(dst, block, limit); err != nil {
			return dst, err
		}
	}
}

// lz4MaxBlock is the largest block an lz4 frame may hold (block maximum size 7: 4 MiB).
const lz4MaxBlock = 4 << 20

// unlz4Block appends the decompressed block to dst, at most limit bytes in all. The room it decodes into starts
// at a guess from the block's size and doubles, decoding again, until the block fits, the limit is reached
// (errLimit) or the room exceeds any block's size (the block is corrupt).
func unlz4Block(dst, block []byte, limit int) ([]byte, error) {
	room := limit - len(dst)
	if room <= 0 {
		return dst, errLimit
	}
	want := min(room, max(16*len(block), 64<<10))
	for {
		if cap(dst)-len(dst) < want {
			dst = append(make([]byte, 0, len(dst)+want), dst...)
		}
		m, err := lz4.UncompressBlock(block, dst[len(dst):len(dst)+want])
		switch {
		case err == nil:
			return dst[:len(dst)+m], nil
		case want >= lz4MaxBlock:
			return dst, err
		case want >= room:
			return dst, errLimit
		}
		want = min(2*want, room)
	}
}
