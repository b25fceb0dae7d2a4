package wasmhost

import (
	"errors"
	"maps"
	"slices"
)

// stream is the host state of one HTTP or network context.
type stream struct {
	h        *Host
	root     *Root
	id       uint32
	props    map[string][]byte // the caller's map until the first write (copy on write)
	ownProps bool

	// Header maps by map type (request headers, request trailers, response headers, response trailers)
	// and buffers by buffer type (request body, response body, downstream data, upstream data).
	maps    [4]headerMap
	buffers [numStreamBuffers][]byte
	// seen marks the maps delivered at least once; live marks the maps and buffers Envoy still holds:
	// from their callback until it returns Continue (or the plugin resumes the paused stream).
	seen       [4]bool
	liveMap    [4]bool
	liveBuffer [numStreamBuffers]bool
	logPhase   bool // inside proxy_on_log, where Envoy exposes the access log's maps

	local          *LocalReply
	continued      [4]int // proxy_continue_stream calls per StreamType
	closed         [4]int // proxy_close_stream calls per StreamType
	upstreamClosed bool
	deleted        bool
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
func (s *stream) init(r *Root, props map[string][]byte) {
	h := r.h
	*s = stream{h: h, root: r, id: h.nextID, props: props}
	h.nextID++
	if _, err := h.call(fnContextCreate, r, s, uint64(s.id), uint64(r.id)); err == nil {
		h.streams[s.id] = s
	} else {
		s.deleted = true
	}
}

// ID returns the context id.
func (s *stream) ID() uint32 { return s.id }

// SetProperty sets a per-context property (key: path segments joined by ".").
func (s *stream) SetProperty(key string, v []byte) {
	if !s.ownProps {
		s.props = maps.Clone(s.props)
		if s.props == nil {
			s.props = map[string][]byte{}
		}
		s.ownProps = true
	}
	s.props[key] = v
}

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
		return 0, s.deletedErr()
	}
	r, err := s.h.call(fn, s.root, s, params...)
	return Action(r), err
}

// deliverMap sets header map t and runs its callback; Envoy keeps the map reachable only until the
// callback continues.
func (s *stream) deliverMap(t int, h [][2]string, fn guestFn, params ...uint64) (Action, error) {
	s.maps[t].setFrom(h)
	s.seen[t] = true
	s.liveMap[t] = true
	a, err := s.callAction(fn, params...)
	if a == ActionContinue {
		s.liveMap[t] = false
	}
	return a, err
}

// deliverBuffer sets buffer t and runs its callback, with the same lifetime as deliverMap.
func (s *stream) deliverBuffer(t int, b []byte, fn guestFn, endOfStream bool) (Action, error) {
	s.buffers[t] = append(s.buffers[t][:0], b...)
	s.liveBuffer[t] = true
	a, err := s.callAction(fn, uint64(s.id), uint64(len(b)), b2u(endOfStream))
	if a == ActionContinue {
		s.liveBuffer[t] = false
	}
	return a, err
}

// resume is proxy_continue_stream: Envoy drops the request maps and body on resume (for the request and,
// as its code stands, the response direction too).
func (s *stream) resume(t StreamType) {
	s.continued[t]++
	if t == StreamRequest || t == StreamResponse {
		s.liveMap[mapRequestHeaders], s.liveMap[mapRequestTrailers] = false, false
		s.liveBuffer[bufRequestBody] = false
	}
}

// finish runs the end-of-stream callbacks in order and deletes the context.
func (s *stream) finish(order ...guestFn) error {
	if s.deleted {
		return s.deletedErr()
	}
	s.liveMap = [4]bool{}
	s.liveBuffer = [numStreamBuffers]bool{}
	for _, fn := range order {
		s.logPhase = fn == fnLog
		_, err := s.callAction(fn, uint64(s.id))
		s.logPhase = false
		if err != nil {
			return err
		}
	}
	s.deleted = true
	delete(s.h.streams, s.id)
	s.h.cancelCalls(s.id)
	return nil
}

// deletedErr is the error of a call on a deleted context: the guest failure that ended it, if any.
func (s *stream) deletedErr() error {
	if s.h.err != nil {
		return s.h.err
	}
	return errDeleted
}

// HTTPStream is one HTTP context: request and response callbacks in the order Envoy makes them.
//
// As in Envoy, a header map or body is reachable by the plugin from its callback until that callback
// returns Continue, or later while the stream stays paused (for example in an HTTP call callback);
// outside that window the plugin gets BadArgument. In proxy_on_log the request headers and the response
// headers and trailers are readable again.
type HTTPStream struct{ stream }

// RequestHeaders sets the request headers and calls proxy_on_request_headers.
func (s *HTTPStream) RequestHeaders(headers [][2]string, endOfStream bool) (Action, error) {
	return s.deliverMap(mapRequestHeaders, headers, fnRequestHeaders, uint64(s.id), uint64(len(headers)), b2u(endOfStream))
}

// RequestBody sets the request body chunk and calls proxy_on_request_body.
func (s *HTTPStream) RequestBody(body []byte, endOfStream bool) (Action, error) {
	return s.deliverBuffer(bufRequestBody, body, fnRequestBody, endOfStream)
}

// RequestTrailers sets the request trailers and calls proxy_on_request_trailers.
func (s *HTTPStream) RequestTrailers(trailers [][2]string) (Action, error) {
	return s.deliverMap(mapRequestTrailers, trailers, fnRequestTrailers, uint64(s.id), uint64(len(trailers)))
}

// ResponseHeaders sets the response headers and calls proxy_on_response_headers.
func (s *HTTPStream) ResponseHeaders(headers [][2]string, endOfStream bool) (Action, error) {
	return s.deliverMap(mapResponseHeaders, headers, fnResponseHeaders, uint64(s.id), uint64(len(headers)), b2u(endOfStream))
}

// ResponseBody sets the response body chunk and calls proxy_on_response_body.
func (s *HTTPStream) ResponseBody(body []byte, endOfStream bool) (Action, error) {
	return s.deliverBuffer(bufResponseBody, body, fnResponseBody, endOfStream)
}

// ResponseTrailers sets the response trailers and calls proxy_on_response_trailers.
func (s *HTTPStream) ResponseTrailers(trailers [][2]string) (Action, error) {
	return s.deliverMap(mapResponseTrailers, trailers, fnResponseTrailers, uint64(s.id), uint64(len(trailers)))
}

// InjectRequestHeader sets a request header between the request and the log callbacks, as Envoy's router
// does when its own tracer injects the trace context after the HTTP filters ran (the log phase reads the
// request headers back with the injected values).
func (s *HTTPStream) InjectRequestHeader(key, value string) {
	s.maps[mapRequestHeaders].replace([]byte(key), value)
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

// Complete ends the stream in Envoy's order: proxy_on_log (the access log runs before the filters
// are destroyed), proxy_on_done, proxy_on_delete.
func (s *HTTPStream) Complete() error { return s.finish(fnLog, fnDone, fnDelete) }

// Connection is one network (TCP) context.
//
// Its data buffers are reachable by the plugin from their callback until it returns Continue.
type Connection struct{ stream }

// DownstreamData sets the downstream data buffer and calls proxy_on_downstream_data.
func (c *Connection) DownstreamData(b []byte, endOfStream bool) (Action, error) {
	return c.deliverBuffer(bufDownstream, b, fnDownstreamData, endOfStream)
}

// UpstreamData sets the upstream data buffer and calls proxy_on_upstream_data. As in Envoy, the end of
// the upstream stream is also reported as proxy_on_upstream_connection_close (peer unknown).
func (c *Connection) UpstreamData(b []byte, endOfStream bool) (Action, error) {
	a, err := c.deliverBuffer(bufUpstream, b, fnUpstreamData, endOfStream)
	if err == nil && endOfStream {
		err = c.closeUpstream(PeerUnknown)
	}
	return a, err
}

// DownstreamDataNow returns the downstream data buffer as the plugin left it.
func (c *Connection) DownstreamDataNow() []byte { return slices.Clone(c.buffers[bufDownstream]) }

// UpstreamDataNow returns the upstream data buffer as the plugin left it.
func (c *Connection) UpstreamDataNow() []byte { return slices.Clone(c.buffers[bufUpstream]) }

// Close ends the connection: proxy_on_downstream_connection_close with peer, then
// proxy_on_upstream_connection_close with peer unless the upstream end was already reported, then
// proxy_on_done, proxy_on_log and proxy_on_delete.
func (c *Connection) Close(peer PeerType) error {
	if c.deleted {
		return c.deletedErr()
	}
	if _, err := c.callAction(fnDownstreamClose, uint64(c.id), uint64(peer)); err != nil {
		return err
	}
	if err := c.closeUpstream(peer); err != nil {
		return err
	}
	return c.finish(fnDone, fnLog, fnDelete)
}

func (c *Connection) closeUpstream(peer PeerType) error {
	if c.upstreamClosed {
		return nil
	}
	c.upstreamClosed = true
	_, err := c.callAction(fnUpstreamClose, uint64(c.id), uint64(peer))
	return err
}

func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}
