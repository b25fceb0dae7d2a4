package envoy

import (
	"io"
	"net"
	"testing"
)

// EchoTCP serves a TCP echo upstream on loopback until the test ends and returns its address: every byte a
// connection sends comes back on it, so a line written through a TCP proxy listener is read back unchanged.
func EchoTCP(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}
