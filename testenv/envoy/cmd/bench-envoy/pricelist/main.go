// Command pricelist is a proxy-wasm HTTP plugin for bench-envoy that makes N host calls of one kind per
// request and nothing else, so that the worker CPU of an Envoy running it, minus that of an Envoy running
// it with N = 0, divided by N, is what one such call costs on the machine. The plugin configuration is
// "OP N", OP one of:
//
//	none          no call (the baseline: Envoy's Wasm machinery and the SDK's callbacks)
//	clock         proxy_get_current_time_nanoseconds
//	property      get_property source.address at the request headers
//	log-property  get_property response.code at the end of the stream (proxy_on_log)
//	headers       the whole request header map (get_header_map_pairs)
//	header        one request header value (get_header_map_value x-customer-id)
//	replace       replace_header_map_value of one request header
//	expr          Envoy's expr_evaluate foreign function on a CEL expression (source.address) compiled
//	              once at plugin start with expr_create
//	end-props     at the end of the stream, what the filter's log phase reads for a server span one call at
//	              a time: five properties (response code, flags and code details, the cluster, the peer
//	              address) and the traceparent header (N times the set)
//	end-expr      the same values from one expr_evaluate of the CEL map the filter evaluates (N times)
//	end-concat    the same values from one expr_evaluate of a CEL string joining them (N times): what a map's
//	              serialization costs over a string's
//
// The first stream's first value is checked to be non-empty, so a host call that quietly fails (a property
// Envoy does not serve, a foreign function it was built without) stops the benchmark instead of pricing an
// error path. (Only the first: a stream the client resets has no response code in the log phase.)
package main

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

func init() { proxywasm.SetVMContext(&vm{}) }

func main() {}

type vm struct{ types.DefaultVMContext }

func (*vm) NewPluginContext(uint32) types.PluginContext { return &plugin{} }

type plugin struct {
	types.DefaultPluginContext
	op      string
	n       int
	token   []byte // expr_create's token for op expr
	checked bool   // the first stream's result was checked
}

func (p *plugin) OnPluginStart(int) types.OnPluginStartStatus {
	cfg, err := proxywasm.GetPluginConfiguration()
	if err == nil {
		err = p.configure(string(cfg))
	}
	if err != nil {
		proxywasm.LogCriticalf("pricelist: %v", err)
		return types.OnPluginStartStatusFailed
	}
	return types.OnPluginStartStatusOK
}

func (p *plugin) configure(cfg string) error {
	op, n, ok := strings.Cut(strings.TrimSpace(cfg), " ")
	count, err := strconv.Atoi(n)
	if !ok || err != nil || count < 0 {
		return fmt.Errorf("configuration %q: want \"OP N\"", cfg)
	}
	p.op, p.n = op, count
	switch op {
	case "none", "clock", "property", "log-property", "headers", "header", "replace", "end-props":
	case "expr", "end-expr", "end-concat":
		expr := "source.address"
		switch op {
		case "end-expr":
			expr = endExpr
		case "end-concat":
			expr = endConcat
		}
		tok, err := proxywasm.CallForeignFunction("expr_create", []byte(expr))
		if err != nil || len(tok) != 4 {
			return fmt.Errorf("expr_create: %v (token %d bytes)", err, len(tok))
		}
		p.token = tok
	default:
		return fmt.Errorf("unknown op %q", op)
	}
	return nil
}

func (p *plugin) NewHttpContext(uint32) types.HttpContext { return &stream{p: p} }

type stream struct {
	types.DefaultHttpContext
	p *plugin
}

// endExpr is the map the filter's log phase evaluates for a server span (filter/plugin endExprSource):
// Envoy serializes it as proxy-wasm pairs.
const endExpr = `{'c': response.code, 'f': response.flags, 'd': response.code_details, 'k': xds.cluster_name, ` +
	`'s': source.address, 't': request.headers['traceparent']}`

// endConcat is endExpr as one string, the values joined by '|'.
const endConcat = `string(response.code) + '|' + string(response.flags) + '|' + response.code_details + '|' + ` +
	`xds.cluster_name + '|' + source.address + '|' + request.headers['traceparent']`

// endPaths are the properties end-props reads.
var endPaths = [][]string{
	{"response", "code"}, {"response", "flags"}, {"response", "code_details"}, {"xds", "cluster_name"},
	{"source", "address"},
}

// atEnd reports whether op runs at the end of the stream.
func atEnd(op string) bool {
	return op == "log-property" || op == "end-props" || op == "end-expr" || op == "end-concat"
}

func (s *stream) OnHttpRequestHeaders(int, bool) types.Action {
	if !atEnd(s.p.op) {
		s.run()
	}
	return types.ActionContinue
}

func (s *stream) OnHttpStreamDone() {
	if atEnd(s.p.op) {
		s.run()
	}
}

// run makes the configured calls; the first result is checked.
func (s *stream) run() {
	for i := range s.p.n {
		var err error
		var n int
		switch s.p.op {
		case "clock":
			var t uint64
			if proxyGetCurrentTimeNanoseconds(&t) != 0 || t == 0 {
				err = fmt.Errorf("no clock")
			}
			n = 8
		case "property":
			var b []byte
			b, err = proxywasm.GetProperty([]string{"source", "address"})
			n = len(b)
		case "log-property":
			var b []byte
			b, err = proxywasm.GetProperty([]string{"response", "code"})
			if len(b) == 8 && binary.LittleEndian.Uint64(b) == 0 {
				b = nil
			}
			n = len(b)
		case "headers":
			var h [][2]string
			h, err = proxywasm.GetHttpRequestHeaders()
			n = len(h)
		case "header":
			var v string
			v, err = proxywasm.GetHttpRequestHeader("x-customer-id")
			n = len(v)
		case "replace":
			err = proxywasm.ReplaceHttpRequestHeader("x-price-list", "1")
			n = 1
		case "expr", "end-expr", "end-concat":
			var b []byte
			b, err = proxywasm.CallForeignFunction("expr_evaluate", s.p.token)
			n = len(b)
			if i == 0 && !s.p.checked {
				proxywasm.LogInfof("pricelist: %s = %q", s.p.op, b)
			}
		case "end-props":
			for _, path := range endPaths {
				b, _ := proxywasm.GetProperty(path)
				n += len(b)
			}
			var v string
			v, err = proxywasm.GetHttpRequestHeader("traceparent")
			n += len(v)
		}
		if i == 0 && !s.p.checked {
			if err != nil || n == 0 {
				proxywasm.LogCriticalf("pricelist: %s: %v (%d bytes)", s.p.op, err, n)
				panic("pricelist: host call failed")
			}
			s.p.checked = true
		}
	}
}
