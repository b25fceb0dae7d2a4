package main

import (
	"io"
	"net"
	"net/http"
	"sync/atomic"
)

// sink is an OTLP/HTTP collector that reads every request's whole body, then answers 200 (as a collector
// does), so Envoy keeps the exporting connection open. It counts the posts to /v1/traces and their bytes.
type sink struct {
	addr         string
	posts, bytes atomic.Int64
	srv          *http.Server
}

func startSink() (*sink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &sink{addr: ln.Addr().String()}
	s.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		if r.URL.Path == "/v1/traces" {
			s.posts.Add(1)
			s.bytes.Add(n)
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK)
	})}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}
