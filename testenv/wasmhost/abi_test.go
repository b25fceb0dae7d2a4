package wasmhost

import (
	"encoding/binary"
	"math"
	"os"
	"slices"
	"testing"
	"time"
)

// abiHost loads testdata/minimal (no SDK) so host functions can be driven directly with arguments in
// guest memory. The minimal plugin's allocator always answers 1024, so returned data lands there.
func abiHost(t *testing.T, cfg Config) *Host {
	t.Helper()
	wasm, err := os.ReadFile("testdata/minimal/minimal.wasm")
	if err != nil {
		t.Fatal(err)
	}
	h, err := Load(t.Context(), wasm, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close(t.Context()) })
	h.activeRoot = h.roots[0] // as inside a root callback
	return h
}

// Guest memory layout of the tests: inputs at inArea, out-parameters at outPtr and outSize.
const (
	inArea  = 4096
	outPtr  = 64
	outSize = 68
)

// put writes b into guest memory at off and returns its pointer and size as call arguments.
func put(t *testing.T, h *Host, off uint32, b []byte) (uint64, uint64) {
	t.Helper()
	if !h.mem.Write(off, b) {
		t.Fatal("write outside guest memory")
	}
	return uint64(off), uint64(len(b))
}

// returned reads the bytes a host function returned through outPtr and outSize.
func returned(t *testing.T, h *Host) []byte {
	t.Helper()
	p, _ := h.mem.ReadUint32Le(outPtr)
	n, _ := h.mem.ReadUint32Le(outSize)
	b, ok := h.mem.Read(p, n)
	if !ok {
		t.Fatal("returned pointer outside guest memory")
	}
	return slices.Clone(b)
}

func u32At(t *testing.T, h *Host, off uint32) uint32 {
	t.Helper()
	v, _ := h.mem.ReadUint32Le(off)
	return v
}

func TestMetricRules(t *testing.T) {
	h := abiHost(t, Config{})
	ids := map[string]uint64{}
	for _, d := range []struct {
		name string
		kind MetricType
	}{{"c", MetricCounter}, {"g", MetricGauge}, {"h", MetricHistogram}, {"c", MetricCounter}} {
		p, n := put(t, h, inArea, []byte(d.name))
		if st := h.defineMetric([]uint64{uint64(d.kind), p, n, outPtr}); st != statusOK {
			t.Fatalf("define %s: %d", d.name, st)
		}
		id := uint64(u32At(t, h, outPtr))
		if old, ok := ids[d.name]; ok && old != id {
			t.Errorf("redefining %s gave id %d, then %d", d.name, old, id)
		}
		ids[d.name] = id
	}
	minus := func(v int64) uint64 { return uint64(v) }
	steps := []struct {
		name   string
		fn     func([]uint64) status
		metric string
		arg    uint64
		want   status
	}{
		{"counter +0", h.incrementMetric, "c", 0, statusBadArgument},
		{"counter +5", h.incrementMetric, "c", 5, statusOK},
		{"counter -1", h.incrementMetric, "c", minus(-1), statusBadArgument},
		{"counter record adds", h.recordMetric, "c", 2, statusOK},
		{"gauge -3", h.incrementMetric, "g", minus(-3), statusOK},
		{"gauge record sets", h.recordMetric, "g", 7, statusOK},
		{"histogram increment", h.incrementMetric, "h", 1, statusBadArgument},
		{"histogram record", h.recordMetric, "h", 9, statusOK},
		{"unknown id", h.incrementMetric, "", 1, statusNotFound},
	}
	for _, st := range steps {
		id, ok := ids[st.metric]
		if !ok {
			id = 99
		}
		if got := st.fn([]uint64{id, st.arg}); got != st.want {
			t.Errorf("%s: status %d, want %d", st.name, got, st.want)
		}
	}
	if got := h.Metrics(); got["c"] != 7 || got["g"] != 7 {
		t.Errorf("metrics = %v, want c=7 g=7", got)
	}
	if s, _ := h.Histogram("h"); !slices.Equal(s, []uint64{9}) {
		t.Errorf("histogram = %v", s)
	}
	gets := []struct {
		metric string
		want   status
		value  uint64
	}{{"c", statusOK, 7}, {"g", statusOK, 7}, {"h", statusBadArgument, 0}, {"", statusNotFound, 0}}
	for _, g := range gets {
		id, ok := ids[g.metric]
		if !ok {
			id = 99
		}
		if st := h.getMetric([]uint64{id, outPtr}); st != g.want {
			t.Errorf("get %q: status %d, want %d", g.metric, st, g.want)
		} else if v, _ := h.mem.ReadUint64Le(outPtr); st == statusOK && v != g.value {
			t.Errorf("get %q = %d, want %d", g.metric, v, g.value)
		}
	}
}

func TestBufferRules(t *testing.T) {
	h := abiHost(t, Config{VMConfig: []byte("vm")})
	s := &stream{h: h, id: 2}
	s.buffers[bufRequestBody] = []byte("hello")
	s.liveBuffer[bufRequestBody] = true
	h.active = s
	writes := []struct {
		name        string
		buf         uint64
		start, size uint64
		data        string
		want        status
		after       string
	}{
		{"prepend", bufRequestBody, 0, 0, "<", statusOK, "<hello"},
		{"append", bufRequestBody, math.MaxInt32, 0, ">", statusOK, "<hello>"},
		{"middle", bufRequestBody, 2, 1, "x", statusBadArgument, "<hello>"},
		{"replace", bufRequestBody, 0, math.MaxInt32, "new", statusOK, "new"},
		{"drain part", bufRequestBody, 0, 1, "N", statusOK, "New"},
		{"vm configuration", bufVMConfig, 0, 0, "x", statusBadArgument, "New"},
		{"response body not held", bufResponseBody, 0, 0, "x", statusBadArgument, "New"},
	}
	for _, w := range writes {
		p, n := put(t, h, inArea, []byte(w.data))
		if st := h.setBufferBytes([]uint64{w.buf, w.start, w.size, p, n}); st != w.want {
			t.Errorf("%s: status %d, want %d", w.name, st, w.want)
		}
		if got := string(s.buffers[bufRequestBody]); got != w.after {
			t.Errorf("%s: body %q, want %q", w.name, got, w.after)
		}
	}
	reads := []struct {
		name       string
		buf        uint64
		start, max uint64
		want       status
		data       string // "" with OK: nothing written (null pointer)
	}{
		{"slice", bufRequestBody, 1, 2, statusOK, "ew"},
		{"clipped", bufRequestBody, 1, math.MaxInt32, statusOK, "ew"},
		{"at the end", bufRequestBody, 3, 5, statusOK, ""},
		{"past the end", bufRequestBody, 4, 1, statusBadArgument, ""},
		{"vm configuration", bufVMConfig, 0, 10, statusOK, "vm"},
		{"plugin configuration outside on_configure", bufPluginConfig, 0, 10, statusNotFound, ""},
		{"call body outside the callback", bufCallBody, 0, 10, statusNotFound, ""},
		{"unknown type", 42, 0, 10, statusNotFound, ""},
	}
	for _, r := range reads {
		h.mem.WriteUint32Le(outPtr, 0)
		h.mem.WriteUint32Le(outSize, 0)
		if st := h.getBufferBytes([]uint64{r.buf, r.start, r.max, outPtr, outSize}); st != r.want {
			t.Errorf("%s: status %d, want %d", r.name, st, r.want)
		} else if got := string(returned(t, h)); got != r.data {
			t.Errorf("%s: %q, want %q", r.name, got, r.data)
		}
	}
}

func TestHTTPCallRules(t *testing.T) {
	h := abiHost(t, Config{Clusters: []string{"otel"}})
	full := [][2]string{{":method", "POST"}, {":path", "/v1/traces"}, {":authority", "collector"}}
	tests := []struct {
		name    string
		cluster string
		headers [][2]string
		timeout int32
		want    status
	}{
		{"valid", "otel", full, 1000, statusOK},
		{"no timeout", "otel", full, 0, statusOK},
		{"negative timeout", "otel", full, -1, statusBadArgument},
		{"unknown cluster", "other", full, 1000, statusBadArgument},
		{"no :authority", "otel", full[:2], 1000, statusBadArgument},
	}
	for _, tc := range tests {
		cp, cn := put(t, h, inArea, []byte(tc.cluster))
		hp, hn := put(t, h, inArea+256, appendSerialized(nil, tc.headers))
		bp, bn := put(t, h, inArea+1024, []byte("body"))
		if st := h.httpCall([]uint64{cp, cn, hp, hn, bp, bn, 0, 0, uint64(uint32(tc.timeout)), outPtr}); st != tc.want {
			t.Errorf("%s: status %d, want %d", tc.name, st, tc.want)
		}
	}
	calls := h.PendingHTTPCalls()
	if len(calls) != 2 || calls[0].Timeout != time.Second || calls[1].Timeout != 0 || string(calls[0].Body) != "body" || calls[0].Context != rootContextID {
		t.Errorf("pending = %+v", calls)
	}
}

func TestSharedQueueAndContextRules(t *testing.T) {
	h := abiHost(t, Config{})
	np, nn := put(t, h, inArea, []byte("q"))
	vp, vn := put(t, h, inArea+64, []byte("item"))
	var id uint64
	steps := []struct {
		name string
		call func() status
		want status
	}{
		{"dequeue unknown", func() status { return h.dequeueSharedQueue([]uint64{7, outPtr, outSize}) }, statusNotFound},
		{"enqueue unknown", func() status { return h.enqueueSharedQueue([]uint64{7, vp, vn}) }, statusNotFound},
		{"resolve unregistered", func() status { return h.resolveSharedQueue([]uint64{0, 0, np, nn, outPtr}) }, statusNotFound},
		{"register", func() status {
			st := h.registerSharedQueue([]uint64{np, nn, outPtr})
			id = uint64(u32At(t, h, outPtr))
			return st
		}, statusOK},
		{"dequeue empty", func() status { return h.dequeueSharedQueue([]uint64{id, outPtr, outSize}) }, statusEmpty},
		{"enqueue", func() status { return h.enqueueSharedQueue([]uint64{id, vp, vn}) }, statusOK},
		{"dequeue", func() status { return h.dequeueSharedQueue([]uint64{id, outPtr, outSize}) }, statusOK},
		{"effective context unknown", func() status { return h.setEffectiveContext([]uint64{99}) }, statusBadArgument},
		{"effective context root", func() status { return h.setEffectiveContext([]uint64{rootContextID}) }, statusOK},
		{"continue without a stream", func() status { return h.continueStream([]uint64{uint64(StreamRequest)}) }, statusBadArgument},
		{"set property on the root", func() status { return h.setProperty([]uint64{np, nn, vp, vn}) }, statusNotFound},
		{"local response without a stream", func() status { return h.sendLocalResponse(make([]uint64, 8)) }, statusBadArgument},
	}
	for _, st := range steps {
		if got := st.call(); got != st.want {
			t.Errorf("%s: status %d, want %d", st.name, got, st.want)
		}
	}
	if got := string(returned(t, h)); got != "item" {
		t.Errorf("dequeued %q", got)
	}
	h.active = &stream{h: h, id: 2}
	if st := h.continueStream([]uint64{uint64(StreamUpstream)}); st != statusUnimplemented {
		t.Errorf("continue upstream: status %d, want Unimplemented as in Envoy", st)
	}
}

func TestCurrentTime(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	h := abiHost(t, Config{Now: func() time.Time { return now }})
	if st := h.currentTime([]uint64{outPtr}); st != statusOK {
		t.Fatalf("status %d", st)
	}
	b, _ := h.mem.Read(outPtr, 8)
	if got := int64(binary.LittleEndian.Uint64(b)); got != now.UnixNano() {
		t.Errorf("proxy_get_current_time_nanoseconds = %d, want %d", got, now.UnixNano())
	}
}
