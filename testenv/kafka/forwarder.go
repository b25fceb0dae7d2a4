package kafka

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/meshtrace/meshtrace/filter/kafka/kafkatest"
)

// Forwarder is a TCP proxy on loopback in front of a broker that counts its connections and records every
// byte both ways as a kafkatest.Capture: the stand-in for Envoy when a test wants the clients' own bytes, for
// the decoder's fixtures and fuzz corpus. Start it before the broker (the broker advertises Addr), then set
// the target with SetTarget.
type Forwarder struct {
	l      net.Listener
	target atomic.Pointer[string]
	conns  atomic.Int64
	active atomic.Int64
	wg     sync.WaitGroup

	mu       sync.Mutex
	open     []net.Conn
	chunks   []kafkatest.Chunk
	record   bool
	recorded int // connections accepted since Record
	epoch    int // incremented by every Record: a connection is recorded only in the epoch it was accepted in
}

// NewForwarder listens on a free loopback port; t.Cleanup closes it and every connection.
func NewForwarder(t testing.TB) *Forwarder {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &Forwarder{l: l}
	f.wg.Add(1)
	go f.accept()
	t.Cleanup(f.close)
	return f
}

// Addr is the forwarder's host:port, to be advertised by the broker.
func (f *Forwarder) Addr() string { return f.l.Addr().String() }

// SetTarget sets the host:port connections are forwarded to.
func (f *Forwarder) SetTarget(addr string) { f.target.Store(&addr) }

// Conns returns how many connections the forwarder has accepted.
func (f *Forwarder) Conns() int64 { return f.conns.Load() }

// Active returns how many connections are still open: accepted, and not yet closed both ways.
func (f *Forwarder) Active() int64 { return f.active.Load() }

// Record starts recording: connections accepted from now on are numbered from 0 and their bytes kept;
// connections open before are not recorded.
func (f *Forwarder) Record() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record, f.chunks, f.recorded = true, nil, 0
	f.epoch++
}

// Capture stops recording and returns what was recorded since Record, in the order the forwarder read it:
// each request chunk is recorded before it is forwarded, so it precedes the response it causes.
func (f *Forwarder) Capture() *kafkatest.Capture {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := &kafkatest.Capture{Chunks: f.chunks}
	f.record, f.chunks = false, nil
	return c
}

func (f *Forwarder) accept() {
	defer f.wg.Done()
	for {
		c, err := f.l.Accept()
		if err != nil {
			return
		}
		f.conns.Add(1)
		target := f.target.Load()
		if target == nil {
			c.Close()
			continue
		}
		up, err := net.Dial("tcp", *target)
		if err != nil {
			c.Close()
			continue
		}
		f.mu.Lock()
		f.open = append(f.open, c, up)
		rc := recConn{id: -1, epoch: f.epoch} // not recorded
		if f.record {
			rc.id, f.recorded = f.recorded, f.recorded+1
		}
		f.mu.Unlock()
		f.active.Add(1)
		pipes := new(atomic.Int32)
		pipes.Store(2)
		f.wg.Add(2)
		go f.pipe(up, c, rc, true, pipes)
		go f.pipe(c, up, rc, false, pipes)
	}
}

// pipe copies src to dst, recording what it reads, and closes dst when src ends; the last of a connection's
// two pipes to end counts the connection closed.
func (f *Forwarder) pipe(dst, src net.Conn, rc recConn, fromClient bool, pipes *atomic.Int32) {
	defer f.wg.Done()
	defer func() {
		if pipes.Add(-1) == 0 {
			f.active.Add(-1)
		}
	}()
	defer dst.Close()
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			f.add(rc, fromClient, buf[:n])
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil { // io.EOF or a closed connection: the copy ends either way
			return
		}
	}
}

// recConn is a connection's number in the recording it was accepted in.
type recConn struct{ id, epoch int }

func (f *Forwarder) add(rc recConn, fromClient bool, b []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.record && rc.id >= 0 && rc.epoch == f.epoch {
		f.chunks = append(f.chunks, kafkatest.Chunk{Conn: rc.id, FromClient: fromClient, Data: append([]byte(nil), b...)})
	}
}

func (f *Forwarder) close() {
	f.l.Close()
	f.mu.Lock()
	for _, c := range f.open {
		c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
}
