package wasmhost

import (
	"io"
	"strconv"
	"time"
)

// Action is what a stream callback returns to the host (proxy_action_t).
type Action uint32

// Actions a stream callback can return.
const (
	ActionContinue Action = 0
	ActionPause    Action = 1
)

// String returns "continue", "pause" or the number.
func (a Action) String() string {
	switch a {
	case ActionContinue:
		return "continue"
	case ActionPause:
		return "pause"
	}
	return "action(" + strconv.FormatUint(uint64(a), 10) + ")"
}

// PeerType says which side closed a connection (proxy_peer_type_t).
type PeerType uint32

// Peer types passed to the connection close callbacks.
const (
	PeerUnknown PeerType = 0
	PeerLocal   PeerType = 1
	PeerRemote  PeerType = 2
)

// LogLevel is the level of a proxy_log call (proxy_log_level_t).
type LogLevel uint32

// Log levels of proxy_log.
const (
	LogTrace LogLevel = iota
	LogDebug
	LogInfo
	LogWarn
	LogError
	LogCritical
)

var logLevelNames = [...]string{"trace", "debug", "info", "warn", "error", "critical"}

// String returns the level name as Envoy prints it ("info", "warn", ...).
func (l LogLevel) String() string {
	if int(l) < len(logLevelNames) {
		return logLevelNames[l]
	}
	return "level(" + strconv.FormatUint(uint64(l), 10) + ")"
}

// LogEntry is one proxy_log call.
type LogEntry struct {
	Level   LogLevel
	Message string
}

// MetricType is the kind of a metric defined with proxy_define_metric.
type MetricType uint32

// Metric kinds.
const (
	MetricCounter   MetricType = 0
	MetricGauge     MetricType = 1
	MetricHistogram MetricType = 2
)

// StreamType names the direction in proxy_continue_stream and proxy_close_stream.
type StreamType uint32

// Stream types.
const (
	StreamRequest    StreamType = 0
	StreamResponse   StreamType = 1
	StreamDownstream StreamType = 2
	StreamUpstream   StreamType = 3
)

// HTTPCallRequest is an outgoing call made with proxy_http_call.
type HTTPCallRequest struct {
	ID uint32 // the token the plugin got back, and the id for Host.RespondHTTPCall
	// Context is the effective context that made the call (a root or a stream). As in Envoy, deleting
	// a stream context cancels the calls it made: they are never answered.
	Context  uint32
	Cluster  string
	Headers  [][2]string // as the plugin sent them, pseudo-headers included
	Body     []byte
	Trailers [][2]string
	Timeout  time.Duration // 0: none
}

// Header returns the first value of the named header (case-insensitive) and whether it is present.
func (r HTTPCallRequest) Header(name string) (string, bool) {
	return lookup(r.Headers, name)
}

// HTTPCallResponse is the answer delivered to the plugin for an HTTP call.
type HTTPCallResponse struct {
	Headers  [][2]string // including ":status"
	Body     []byte
	Trailers [][2]string
	// Failed delivers the callback with zero headers, body and trailers, as Envoy does when the call is
	// reset, times out or cannot reach the cluster.
	Failed bool
}

// Config configures one plugin instance: a VM and its first root context.
type Config struct {
	// PluginConfig is the first root context's plugin configuration, sized in proxy_on_configure.
	PluginConfig []byte
	// VMConfig is the VM configuration buffer, sized in proxy_on_vm_start.
	VMConfig []byte
	// Properties are host-wide properties; the key is the path segments joined by "."
	// (e.g. "node.metadata.WORKLOAD_NAME"). Root and stream properties take precedence.
	Properties map[string][]byte
	// Now is the host clock, seen by the guest through WASI clock_time_get (wall and monotonic) and
	// proxy_get_current_time_nanoseconds. Default: the system clock. A custom clock must not go backwards.
	Now func() time.Time
	// HTTPCall optionally answers calls synchronously: if it returns ok, the response is delivered on the
	// next Flush or Tick; otherwise the call stays pending until RespondHTTPCall.
	HTTPCall func(HTTPCallRequest) (HTTPCallResponse, bool)
	// Clusters, if not nil, lists the clusters proxy_http_call accepts; other names get BadArgument, as an
	// unknown cluster does in Envoy.
	Clusters []string
	// Shared is the shared data and queue store; hosts given the same Shared see each other's data, as
	// VMs with one vm_id do. Default: a store private to the host.
	Shared *Shared
	// LogLevel is the lowest proxy_log level Logs keeps (default LogTrace: all of them).
	LogLevel LogLevel
	// Stdout and Stderr receive the guest's WASI output (default: discarded).
	Stdout, Stderr io.Writer
	// Env is the VM's environment, read by the guest through WASI environ_get (os.Getenv in Go and
	// TinyGo), as Envoy's vm_config.environment_variables hands it over; passed in key order. Default:
	// empty (the test process's own environment is never passed).
	Env map[string]string
}
