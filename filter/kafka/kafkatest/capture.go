// Package kafkatest records real Kafka traffic for tests: it runs the franz-go client (kgo) against the
// franz-go in-process broker (kfake) through a recording dialer, and stores both directions of every
// connection as a Capture. It is for tests only; the filter does not import it.
package kafkatest

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"github.com/meshtrace/meshtrace/filter/kafka"
)

// Chunk is the bytes of one read or write on one connection.
type Chunk struct {
	Conn       int  // connection number, from 0 in dial order
	FromClient bool // request bytes (client to broker) if true, response bytes otherwise
	Data       []byte
}

// Capture is the traffic of a scenario in the order it happened across all its connections.
type Capture struct {
	Chunks []Chunk
}

// Conns returns the number of connections in the capture.
func (c *Capture) Conns() int {
	n := 0
	for _, ch := range c.Chunks {
		n = max(n, ch.Conn+1)
	}
	return n
}

// Bytes returns the number of bytes in the capture.
func (c *Capture) Bytes() int {
	n := 0
	for _, ch := range c.Chunks {
		n += len(ch.Data)
	}
	return n
}

// MarshalBinary encodes the capture as a sequence of chunks, each: connection (uvarint), direction byte
// (1 = from client), length (uvarint), data. The same encoding is the input of the decoder's fuzz target.
func (c *Capture) MarshalBinary() ([]byte, error) {
	var out []byte
	for _, ch := range c.Chunks {
		out = binary.AppendUvarint(out, uint64(ch.Conn))
		dir := byte(0)
		if ch.FromClient {
			dir = 1
		}
		out = append(out, dir)
		out = binary.AppendUvarint(out, uint64(len(ch.Data)))
		out = append(out, ch.Data...)
	}
	return out, nil
}

// UnmarshalBinary decodes what MarshalBinary encoded.
func (c *Capture) UnmarshalBinary(b []byte) error {
	c.Chunks = c.Chunks[:0]
	for len(b) > 0 {
		conn, n := binary.Uvarint(b)
		if n <= 0 || conn > 1<<16 {
			return errors.New("kafkatest: bad connection number")
		}
		b = b[n:]
		if len(b) == 0 {
			return errors.New("kafkatest: missing direction")
		}
		dir := b[0]
		b = b[1:]
		size, n := binary.Uvarint(b)
		if n <= 0 || size > uint64(len(b)-n) {
			return fmt.Errorf("kafkatest: chunk of %d bytes runs past the end", size)
		}
		b = b[n:]
		c.Chunks = append(c.Chunks, Chunk{Conn: int(conn), FromClient: dir == 1, Data: b[:size:size]})
		b = b[size:]
	}
	return nil
}

// Path returns where the committed capture of a scenario lives.
func Path(name string) string {
	return filepath.Join(dir(), "testdata", "captures", name+".bin")
}

// Load reads the committed capture of a scenario.
func Load(name string) (*Capture, error) {
	b, err := os.ReadFile(Path(name))
	if err != nil {
		return nil, err
	}
	c := &Capture{}
	return c, c.UnmarshalBinary(b)
}

// Save writes a capture where Load finds it and, as a seed, into the decoder's fuzz corpus
// (testdata/fuzz/FuzzDecoder/<name>); sc, when it has topics, is written beside the capture as <name>.json
// for LoadRecorded.
func Save(name string, c *Capture, sc *Scenario) error {
	b, err := c.MarshalBinary()
	if err != nil {
		return err
	}
	if err := os.WriteFile(Path(name), b, 0o644); err != nil {
		return err
	}
	if sc != nil {
		js, err := json.MarshalIndent(sc, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(strings.TrimSuffix(Path(name), ".bin")+".json", append(js, '\n'), 0o644); err != nil {
			return err
		}
	}
	seeds := filepath.Join(dir(), "testdata", "fuzz", "FuzzDecoder")
	if err := os.MkdirAll(seeds, 0o755); err != nil {
		return err
	}
	seed := "go test fuzz v1\n[]byte(" + strconv.Quote(string(b)) + ")\n"
	return os.WriteFile(filepath.Join(seeds, name), []byte(seed), 0o644)
}

// LoadRecorded returns the scenarios stored with Save, in name order: the traffic of real clients against a
// real broker, with what the clients reported.
func LoadRecorded() ([]Scenario, error) {
	files, err := filepath.Glob(filepath.Join(dir(), "testdata", "captures", "*.json"))
	if err != nil {
		return nil, err
	}
	var out []Scenario
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var sc Scenario
		if err := json.Unmarshal(b, &sc); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		out = append(out, sc)
	}
	return out, nil
}

// dir returns the kafka package folder, which holds testdata.
func dir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}

// Split returns the capture with every chunk cut into pieces of at most size bytes (size >= 1), as a proxy
// may deliver them.
func (c *Capture) Split(size int) *Capture {
	out := &Capture{}
	for _, ch := range c.Chunks {
		for d := ch.Data; len(d) > 0; d = d[min(size, len(d)):] {
			out.Chunks = append(out.Chunks, Chunk{Conn: ch.Conn, FromClient: ch.FromClient, Data: d[:min(size, len(d))]})
		}
	}
	return out
}

// Merged returns the capture with consecutive chunks of the same connection and direction joined, so that one
// chunk carries several frames.
func (c *Capture) Merged() *Capture {
	out := &Capture{}
	for _, ch := range c.Chunks {
		if n := len(out.Chunks); n > 0 && out.Chunks[n-1].Conn == ch.Conn && out.Chunks[n-1].FromClient == ch.FromClient {
			out.Chunks[n-1].Data = append(out.Chunks[n-1].Data, ch.Data...)
			continue
		}
		out.Chunks = append(out.Chunks, Chunk{Conn: ch.Conn, FromClient: ch.FromClient, Data: append([]byte(nil), ch.Data...)})
	}
	return out
}

// Feed replays the capture into one decoder per connection, made with cfg and h (share cfg.Topics and
// cfg.Groups across them as a filter does), at time = chunk index, closes them, and returns them for Err.
func (c *Capture) Feed(cfg kafka.Config, h kafka.Handler) []*kafka.Decoder {
	decoders := make([]*kafka.Decoder, c.Conns())
	for i := range decoders {
		decoders[i] = kafka.NewDecoder(cfg, h)
	}
	// Every chunk is fed from one buffer, overwritten after each call, as the filter feeds the host's copies
	// (plugin.lend): a decoder that kept a slice of its input would report the overwritten bytes.
	var buf []byte
	for i, ch := range c.Chunks {
		buf = append(buf[:0], ch.Data...)
		if ch.FromClient {
			decoders[ch.Conn].Requests(buf, uint64(i))
		} else {
			decoders[ch.Conn].Responses(buf, uint64(i))
		}
		for j := range buf {
			buf[j] = 0xa5
		}
	}
	for _, d := range decoders {
		d.Close(uint64(len(c.Chunks)))
	}
	return decoders
}
