package meili

import (
	"net"
	"net/http"
	"time"
)

// newHTTPClient returns the HTTP client the store uses when Config.HTTPClient is nil: net/http's default
// transport settings, except that it does not ask for compressed responses and keeps more idle connections.
//
// Not asking for gzip is what makes searches fast. A plain http.Transport adds "Accept-Encoding: gzip" to
// every request. Meilisearch then compresses the response and streams it with chunked encoding, writing
// the status line and headers (about 240 bytes) in one send and the gzip body in another. Meilisearch does
// not set TCP_NODELAY on the connections it accepts, so Nagle's algorithm holds that second small send until
// the headers are acknowledged. The client has nothing to send until it has the body, so its kernel delays
// that ACK (Linux's minimum delayed ACK is 40ms). Every search on a kept-alive connection therefore took
// about 44ms, whatever Meilisearch's processingTimeMs said. A new connection did not show this because a
// fresh Linux connection acknowledges at once at first, so only pooled connections were slow, and the
// delay is the same for curl --compressed. Without Accept-Encoding, Meilisearch sends the body uncompressed
// with a Content-Length, headers and body in one send, and there is no second segment to hold back. Strace
// of the server shows one sendto per response instead of two, TcpExtDelayedACKs goes from 39 per 40 searches
// to 0, and a kept-alive search goes from 44ms to about 1ms.
//
// The fix is made here, in the client, because Meilisearch's socket options are not ours to change. It is
// not done with TCP_QUICKACK on the client socket: Linux clears that flag again by itself, so it would have
// to be set before every read, and it only exists on Linux. The price is bigger responses (JSON instead of
// gzip). That does not matter between the indexer and Meilisearch, which normally run on the same host or
// network, and it also saves compression CPU on both sides. A meilisearch-go client built with
// WithContentEncoding sets Accept-Encoding itself and would bring the delay back.
//
// The pool keeps up to 32 idle connections to Meilisearch (net/http's default is 2). The two batchers, their
// task polling, field registration and concurrent searches all share it, and each connection the pool
// cannot keep is closed after its request, so the next request has to dial a new one.
func newHTTPClient() *http.Client {
	dialer := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Client{
		Timeout: 60 * time.Second,
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           dialer.DialContext,
			ForceAttemptHTTP2:     true,
			DisableCompression:    true,
			MaxIdleConns:          64,
			MaxIdleConnsPerHost:   32,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   10 * time.Second,
			ExpectContinueTimeout: time.Second,
		},
	}
}
