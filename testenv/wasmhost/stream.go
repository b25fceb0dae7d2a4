package wasmhost

import (
	"errors"
	"maps"
	"slices"
)

// stream is the host state of one HTTP or network context.
type stream struct {
	h     *Host
	id    uint32
	props map[string][]byte

	maps    [4]headerMap             // by map type: request headers, request trailers, response headers, response trailers
	seen    [4]bool                  // whether the host has delivered the map yet
	buffers [numStreamBuffers][]byte // by buffer type: request body, response body, downstream, upstream

	local     *LocalReply
	continued [4]int // proxy_continue_stream calls per StreamType
	closed    [4]int // proxy_close_stream calls per StreamType
	deleted   bool
}

// LocalReply is what the plugin passed to proxy_send_local_response.
type LocalReply struct {
	Status     uint32
	Details    string
	Body       []byte
	Headers    [][2]string
	GRPCStatus int32
}

var errDeleted = errors.New("wasmhost: the context is already deleted")

// init creates the context in the guest; a failure stays in h.err and is returned by every later call.
func (s *stream) init(h *Host, props map[string][]byte) {
	*s = stream{h: h, id: h.nextID, props: maps.Clone(props)}
	if s.props == nil {
		s.props = map[string][]byte{}
	}
	h.nextID++
	if _, err := h.call(fnContextCreate, s, uint64(s.id), rootContextID); err == nil {
		h.streams[s.id] = s
	} else {
		s.deleted = true
	}
}

func (s *stream) setMap(t int, h [][2]string) {
	s.maps[t].setFrom(h)
	s.seen[t] = true
}

func (s *stream) setBuffer(t int, b []byte) {
	s.buffers[t] = append(s.buffers[t][:0], b...)
}

// ID returns the context id.
func (s *stream) ID() uint32 { return s.id }

// SetProperty sets a per-context property (key: path segments joined by ".").
func (s *stream) SetProperty(key string, v []byte) { s.props[key] = v }

// Property returns a per-context property, including those the plugin set.
func (s *stream) Property(key string) ([]byte, bool) {
	v, ok := s.props[key]
	return v, ok
}

// Resumed returns how many times the plugin called proxy_continue_stream for t.
func (s *stream) Resumed(t StreamType) int { return s.continued[t&3] }

// Closed returns how many times the plugin called proxy_close_stream for t.
func (s *stream) Closed(t StreamType) int { return s.closed[t&3] }

func (s *stream) callAction(fn guestFn, params ...uint64) (Action, error) {
	if s.deleted {
		if s.h.err != nil {
			return 0, s.h.err
		}
		return 0, errDeleted
	}
	r, err := s.h.call(fn, s, params...)
	return Action(r), err
}

// finish runs proxy_on_done, proxy_on_log and proxy_on_delete, as Envoy does when a stream ends.
func (s *stream) finish() error {
	if s.deleted {
		if s.h.err != nil {
			return s.h.err
		}
		return errDeleted
	}
	for _, fn := range []guestFn{fnDone, fnLog, fnDelete} {
		if _, err := s.callAction(fn, uint64(s.id)); err != nil {
			return err
		}
	}
	s.deleted = true
	delete(s.h.streams, s.id)
	return nil
}

// HTTPStream is one HTTP context: request and response callbacks in the order Envoy makes them.
type HTTPStream struct{ stream }

// NewHTTPStream creates an HTTP context (proxy_on_context_create) with per-stream properties such as
// "response.code", "response.flags", "xds.cluster_name" or "upstream.address".
// A failure of the guest is returned by the stream's next call.
func (h *Host) NewHTTPStream(props map[string][]byte) *HTTPStream {
	s := &HTTPStream{}
	s.init(h, props)
	return s
}

// RequestHeaders sets the request headers and calls proxy_on_request_headers.
func (s *HTTPStream) RequestHeaders(headers [][2]string, endOfStream bool) (Action, error) {
	s.setMap(mapRequestHeaders, headers)
	return s.callAction(fnRequestHeaders, uint64(s.id), uint64(len(headers)), b2u(endOfStream))
}

// RequestBody sets the request body chunk and calls proxy_on_request_body.
func (s *HTTPStream) RequestBody(body []byte, endOfStream bool) (Action, error) {
	s.setBuffer(bufRequestBody, body)
	return s.callAction(fnRequestBody, uint64(s.id), uint64(len(body)), b2u(endOfStream))
}

// RequestTrailers sets the request trailers and calls proxy_on_request_trailers.
func (s *HTTPStream) RequestTrailers(trailers [][2]string) (Action, error) {
	s.setMap(mapRequestTrailers, trailers)
	return s.callAction(fnRequestTrailers, uint64(s.id), uint64(len(trailers)))
}

// ResponseHeaders sets the response headers and calls proxy_on_response_headers.
func (s *HTTPStream) ResponseHeaders(headers [][2]string, endOfStream bool) (Action, error) {
	s.setMap(mapResponseHeaders, headers)
	return s.callAction(fnResponseHeaders, uint64(s.id), uint64(len(headers)), b2u(endOfStream))
}

// ResponseBody sets the response body chunk and calls proxy_on_response_body.
func (s *HTTPStream) ResponseBody(body []byte, endOfStream bool) (Action, error) {
	s.setBuffer(bufResponseBody, body)
	return s.callAction(fnResponseBody, uint64(s.id), uint64(len(body)), b2u(endOfStream))
}

// ResponseTrailers sets the response trailers and calls proxy_on_response_trailers.
func (s *HTTPStream) ResponseTrailers(trailers [][2]string) (Action, error) {
	s.setMap(mapResponseTrailers, trailers)
	return s.callAction(fnResponseTrailers, uint64(s.id), uint64(len(trailers)))
}

// RequestHeadersNow returns the request headers as the plugin left them.
func (s *HTTPStream) RequestHeadersNow() [][2]string { return s.maps[mapRequestHeaders].clone() }

// ResponseHeadersNow returns the response headers as the plugin left them.
func (s *HTTPStream) ResponseHeadersNow() [][2]string { return s.maps[mapResponseHeaders].clone() }

// RequestTrailersNow returns the request trailers as the plugin left them.
func (s *HTTPStream) RequestTrailersNow() [][2]string { return s.maps[mapRequestTrailers].clone() }

// ResponseTrailersNow returns the response trailers as the plugin left them.
func (s *HTTPStream) ResponseTrailersNow() [][2]string { return s.maps[mapResponseTrailers].clone() }

// RequestBodyNow returns the current request body chunk as the plugin left it.
func (s *HTTPStream) RequestBodyNow() []byte { return slices.Clone(s.buffers[bufRequestBody]) }

// ResponseBodyNow returns the current response body chunk as the plugin left it.
func (s *HTTPStream) ResponseBodyNow() []byte { return slices.Clone(s.buffers[bufResponseBody]) }

// LocalResponse returns the status of the local reply the plugin sent, if any.
func (s *HTTPStream) LocalResponse() (status uint32, ok bool) {
	if s.local == nil {
		return 0, false
	}
	return s.local.Status, true
}

// LocalReply returns the complete local reply the plugin sent, if any.
func (s *HTTPStream) LocalReply() (LocalReply, bool) {
	if s.local == nil {
		return LocalReply{}, false
	}
	return *s.local, true
}

// Complete ends the stream: proxy_on_done, proxy_on_log, proxy_on_delete.
func (s *HTTPStream) Complete() error { return s.finish() }

// Connection is one network (TCP) context.
type Connection struct{ stream }

// NewConnection creates a network context and calls proxy_on_new_connection; props are per-connection
// properties such as "destination.port" or "upstream.address".
func (h *Host) NewConnection(props map[string][]byte) (*Connection, Action, error) {
	c := &Connection{}
	c.init(h, props)
	a, err := c.callAction(fnNewConnection, uint64(c.id))
	return c, a, err
}

// DownstreamData sets the downstream data buffer and calls proxy_on_downstream_data.
func (c *Connection) DownstreamData(b []byte, endOfStream bool) (Action, error) {
	c.setBuffer(bufDownstream, b)
	return c.callAction(fnDownstreamData, uint64(c.id), uint64(len(b)), b2u(endOfStream))
}

// UpstreamData sets the upstream data buffer and calls proxy_on_upstream_data.
func (c *Connection) UpstreamData(b []byte, endOfStream bool) (Action, error) {
	c.setBuffer(bufUpstream, b)
	return c.callAction(fnUpstreamData, uint64(c.id), uint64(len(b)), b2u(endOfStream))
}

// DownstreamDataNow returns the downstream data buffer as the plugin left it.
func (c *Connection) DownstreamDataNow() []byte { return slices.Clone(c.buffers[bufDownstream]) }

// UpstreamDataNow returns the upstream data buffer as the plugin left it.
func (c *Connection) UpstreamDataNow() []byte { return slices.Clone(c.buffers[bufUpstream]) }

// Close reports the end of the connection: proxy_on_downstream_connection_close and
// proxy_on_upstream_connection_close with peer, then proxy_on_done, proxy_on_log, proxy_on_delete.
func (c *Connection) Close(peer PeerType) error {
	for _, fn := range []guestFn{fnDownstreamClose, fnUpstreamClose} {
		if _, err := c.callAction(fn, uint64(c.id), uint64(peer)); err != nil {
			return err
		}
	}
	return c.finish()
}

func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}
