// Command probe is a proxy-wasm plugin that exercises every host call the wasmhost tests check. It is
// built for wasip1 (Go and TinyGo) by the tests; the request header "x-op" selects what a stream does.
package main

import (
	"strconv"
	"strings"
	"time"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

func main() {}

func init() { proxywasm.SetVMContext(&vm{}) }

type vm struct{ types.DefaultVMContext }

func (*vm) OnVMStart(int) types.OnVMStartStatus {
	cfg, _ := proxywasm.GetVMConfiguration()
	if string(cfg) == "fail" {
		proxywasm.LogCritical("vm configuration rejected")
		return false
	}
	return true
}

func (*vm) NewPluginContext(uint32) types.PluginContext { return &plugin{} }

// The SDK asks NewHttpContext first, so a plugin context serves either HTTP or network streams: the
// configuration "network" makes this one a network filter, as Envoy configures them separately.
type plugin struct {
	types.DefaultPluginContext
	requests, ticks, callFailed, downstreamBytes, closes proxywasm.MetricCounter
	callStatus, liveStreams                              proxywasm.MetricGauge
	requestHeaderCount                                   proxywasm.MetricHistogram
	queue                                                uint32
	network, drain                                       bool
}

func (p *plugin) OnPluginStart(int) types.OnPluginStartStatus {
	cfg, err := proxywasm.GetPluginConfiguration()
	if err != nil && err != types.ErrorStatusNotFound {
		proxywasm.LogErrorf("plugin configuration: %v", err)
		return false
	}
	if strings.HasPrefix(string(cfg), "fail") {
		proxywasm.LogErrorf("bad configuration: %s", cfg)
		return false
	}
	p.network = string(cfg) == "network"
	p.drain = string(cfg) == "drain"
	p.requests = proxywasm.DefineCounterMetric("probe_requests")
	p.ticks = proxywasm.DefineCounterMetric("probe_ticks")
	p.callFailed = proxywasm.DefineCounterMetric("probe_call_failed")
	p.downstreamBytes = proxywasm.DefineCounterMetric("probe_downstream_bytes")
	p.closes = proxywasm.DefineCounterMetric("probe_closes")
	p.callStatus = proxywasm.DefineGaugeMetric("probe_call_status")
	p.liveStreams = proxywasm.DefineGaugeMetric("probe_live_streams")
	p.requestHeaderCount = proxywasm.DefineHistogramMetric("probe_request_headers")
	if err := proxywasm.SetTickPeriodMilliSeconds(250); err != nil {
		proxywasm.LogErrorf("tick period: %v", err)
		return false
	}
	if p.queue, err = proxywasm.RegisterSharedQueue("probe_queue"); err != nil {
		proxywasm.LogErrorf("register queue: %v", err)
		return false
	}
	proxywasm.LogInfof("started with %d configuration bytes", len(cfg))
	return true
}

// OnTick exports a call: status and body size of the answer become metrics.
func (p *plugin) OnTick() {
	p.ticks.Increment(1)
	headers := [][2]string{{":method", "POST"}, {":path", "/tick"}, {":authority", "collector"}}
	_, err := proxywasm.DispatchHttpCall("collector", headers, []byte("tick"), nil, 1500, p.onCallResponse)
	if err != nil {
		proxywasm.LogWarnf("dispatch: %v", err)
	}
}

// OnPluginDone with the configuration "drain" sends a last call and finishes when it is answered.
func (p *plugin) OnPluginDone() bool {
	if !p.drain {
		return true
	}
	headers := [][2]string{{":method", "POST"}, {":path", "/last"}, {":authority", "collector"}}
	if _, err := proxywasm.DispatchHttpCall("collector", headers, []byte("last"), nil, 1000, func(int, int, int) {
		proxywasm.PluginDone()
	}); err != nil {
		proxywasm.LogErrorf("last call: %v", err)
		return true
	}
	return false
}

func (p *plugin) onCallResponse(numHeaders, bodySize, _ int) {
	if numHeaders == 0 {
		p.callFailed.Increment(1)
		return
	}
	status, err := getCallHeader(":status")
	if err != nil {
		proxywasm.LogErrorf("call response headers: %v", err)
		return
	}
	code, _ := strconv.Atoi(status)
	p.callStatus.Add(int64(code) - p.callStatus.Value())
	body, _ := proxywasm.GetHttpCallResponseBody(0, bodySize)
	proxywasm.LogInfof("call answered %s with %q", status, body)
}

func getCallHeader(name string) (string, error) {
	headers, err := proxywasm.GetHttpCallResponseHeaders()
	if err != nil {
		return "", err
	}
	for _, h := range headers {
		if h[0] == name {
			return h[1], nil
		}
	}
	return "", types.ErrorStatusNotFound
}

func (p *plugin) OnQueueReady(id uint32) {
	for {
		item, err := proxywasm.DequeueSharedQueue(id)
		if err != nil {
			return
		}
		proxywasm.LogInfof("dequeued %s", item)
	}
}

func (p *plugin) NewHttpContext(id uint32) types.HttpContext {
	if p.network {
		return nil
	}
	p.liveStreams.Add(1)
	return &httpStream{p: p, id: id}
}

func (p *plugin) NewTcpContext(uint32) types.TcpContext { return &conn{p: p} }

type httpStream struct {
	types.DefaultHttpContext
	p       *plugin
	id      uint32
	headers int
}

func (s *httpStream) OnHttpRequestHeaders(numHeaders int, _ bool) types.Action {
	s.p.requests.Increment(1)
	s.headers = numHeaders
	op, _ := proxywasm.GetHttpRequestHeader("x-op")
	must(proxywasm.AddHttpRequestHeader("x-probe-seen", strconv.Itoa(numHeaders)))
	if _, err := proxywasm.GetHttpRequestHeader("x-replace"); err == nil {
		must(proxywasm.ReplaceHttpRequestHeader("x-replace", "replaced"))
	}
	must(proxywasm.RemoveHttpRequestHeader("x-remove"))
	if _, err := proxywasm.GetHttpResponseHeader(":status"); err != types.ErrorStatusBadArgument {
		proxywasm.LogErrorf("response headers readable during the request: %v", err)
	}
	switch op {
	case "deny":
		must(proxywasm.SendHttpResponse(403, [][2]string{{"x-denied-by", "probe"}}, []byte("denied"), -1))
		return types.ActionPause
	case "call":
		headers := [][2]string{{":method", "GET"}, {":path", "/authz"}, {":authority", "authz"}}
		if _, err := proxywasm.DispatchHttpCall("authz", headers, nil, nil, 500, s.onAuthz); err != nil {
			must(proxywasm.AddHttpRequestHeader("x-call-error", err.Error()))
			return types.ActionContinue
		}
		return types.ActionPause
	case "bad-call":
		_, err := proxywasm.DispatchHttpCall("authz", [][2]string{{":path", "/"}}, nil, nil, 500, s.onAuthz)
		must(proxywasm.AddHttpRequestHeader("x-call-error", errText(err)))
	case "panic":
		panic("probe panic on request " + strconv.Itoa(int(s.id)))
	case "property":
		v, err := proxywasm.GetProperty([]string{"node", "metadata", "WORKLOAD_NAME"})
		must(proxywasm.AddHttpRequestHeader("x-workload", string(v)+errText(err)))
		v, err = proxywasm.GetProperty([]string{"xds", "cluster_name"})
		must(proxywasm.AddHttpRequestHeader("x-cluster", string(v)+errText(err)))
		_, err = proxywasm.GetProperty([]string{"no", "such"})
		must(proxywasm.AddHttpRequestHeader("x-missing", errText(err)))
		must(proxywasm.SetProperty([]string{"probe", "stream"}, []byte("set-by-probe")))
	case "shared":
		v, cas, err := proxywasm.GetSharedData("probe_key")
		if err == types.ErrorStatusNotFound {
			v, cas = []byte("0"), 0
		}
		n, _ := strconv.Atoi(string(v))
		first := proxywasm.SetSharedData("probe_key", []byte(strconv.Itoa(n+1)), cas)
		if cas == 0 { // a new key takes any token: make the stale write use a token that cannot match
			_, cas, _ = proxywasm.GetSharedData("probe_key")
			cas++
		}
		stale := proxywasm.SetSharedData("probe_key", []byte("stale"), cas)
		must(proxywasm.AddHttpRequestHeader("x-shared", strconv.Itoa(n+1)+" "+errText(first)+" "+errText(stale)))
	case "enqueue":
		id, err := proxywasm.ResolveSharedQueue("", "probe_queue")
		if err == nil {
			err = proxywasm.EnqueueSharedQueue(id, []byte("item-"+strconv.Itoa(int(s.id))))
		}
		must(proxywasm.AddHttpRequestHeader("x-enqueue", errText(err)))
	case "config":
		_, err := proxywasm.GetPluginConfiguration()
		must(proxywasm.AddHttpRequestHeader("x-config", errText(err)))
	case "time":
		must(proxywasm.AddHttpRequestHeader("x-time", strconv.FormatInt(time.Now().UnixNano(), 10)))
	case "pairs":
		headers, err := proxywasm.GetHttpRequestHeaders()
		must(err)
		reversed := make([][2]string, 0, len(headers))
		for i := len(headers) - 1; i >= 0; i-- {
			reversed = append(reversed, headers[i])
		}
		must(proxywasm.ReplaceHttpRequestHeaders(reversed))
	}
	return types.ActionContinue
}

func (s *httpStream) onAuthz(numHeaders, _, _ int) {
	status := "failed"
	if numHeaders > 0 {
		status, _ = getCallHeader(":status")
	}
	must(proxywasm.AddHttpRequestHeader("x-authz", status))
	must(proxywasm.ResumeHttpRequest())
}

func (s *httpStream) OnHttpRequestBody(bodySize int, endOfStream bool) types.Action {
	if !endOfStream {
		return types.ActionPause
	}
	body, err := proxywasm.GetHttpRequestBody(0, bodySize)
	must(err)
	must(proxywasm.ReplaceHttpRequestBody([]byte(strings.ToUpper(string(body)))))
	return types.ActionContinue
}

func (s *httpStream) OnHttpResponseHeaders(int, bool) types.Action {
	status, _ := proxywasm.GetHttpResponseHeader(":status")
	code, err := proxywasm.GetProperty([]string{"response", "code"})
	must(proxywasm.AddHttpResponseHeader("x-probe-status", status+"/"+string(code)+errText(err)))
	_, err = proxywasm.GetHttpRequestHeader(":method")
	must(proxywasm.AddHttpResponseHeader("x-request-path", errText(err)))
	return types.ActionContinue
}

func (s *httpStream) OnHttpResponseBody(_ int, endOfStream bool) types.Action {
	if endOfStream {
		must(proxywasm.AppendHttpResponseBody([]byte("!")))
		must(proxywasm.PrependHttpResponseBody([]byte("<")))
	}
	return types.ActionContinue
}

func (s *httpStream) OnHttpResponseTrailers(int) types.Action {
	must(proxywasm.AddHttpResponseTrailer("x-probe-trailer", "1"))
	return types.ActionContinue
}

func (s *httpStream) OnHttpStreamDone() {
	if method, err := proxywasm.GetHttpRequestHeader(":method"); err == nil {
		status, _ := proxywasm.GetHttpResponseHeader(":status")
		proxywasm.LogInfof("log: method %s, status %s", method, status)
	}
	s.p.requestHeaderCount.Record(uint64(s.headers))
	s.p.liveStreams.Add(-1)
}

type conn struct {
	types.DefaultTcpContext
	p *plugin
}

func (c *conn) OnDownstreamData(size int, _ bool) types.Action {
	c.p.downstreamBytes.Increment(uint64(size))
	must(proxywasm.PrependDownstreamData([]byte("<")))
	must(proxywasm.AppendDownstreamData([]byte(">")))
	return types.ActionContinue
}

func (c *conn) OnUpstreamData(size int, _ bool) types.Action {
	data, err := proxywasm.GetUpstreamData(0, size)
	must(err)
	must(proxywasm.ReplaceUpstreamData([]byte(strings.ToUpper(string(data)))))
	return types.ActionContinue
}

func (c *conn) OnDownstreamClose(types.PeerType) { c.p.closes.Increment(1) }
func (c *conn) OnUpstreamClose(types.PeerType)   { c.p.closes.Increment(1) }

func (c *conn) OnStreamDone() { proxywasm.LogInfo("connection done") }

func errText(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}

func must(err error) {
	if err != nil {
		panic(err.Error())
	}
}
