package plugin

import (
	"crypto/rand"
	"encoding/binary"
	"math/bits"
	"unsafe"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
)

// Property paths read by the filter (Envoy attribute names).
var (
	pathListenerDirection = []string{"xds", "listener_direction"}
	pathLegacyDirection   = []string{"listener_direction"} // older proxies' name (see nodeMetadata)
	pathSourceAddress     = []string{"source", "address"}
	pathUpstreamAddress   = []string{"upstream", "address"}
	pathClusterName       = []string{"xds", "cluster_name"}
	pathResponseCode      = []string{"response", "code"}
	pathResponseFlags     = []string{"response", "flags"}
	pathResponseDetails   = []string{"response", "code_details"}
)

// propertyString returns a string property, or "" when the host has none. The host writes each property
// into a buffer of its own, which nothing else refers to or reuses, so the string shares it without a copy.
func propertyString(path []string) string {
	b, err := proxywasm.GetProperty(path)
	if err != nil || len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// replaceRequestHeader sets request header name to value. The host copies the value during the call, so a
// reused buffer can be passed without making a string of it first.
func replaceRequestHeader(name string, value []byte) {
	var v string
	if len(value) > 0 {
		v = unsafe.String(&value[0], len(value))
	}
	if err := proxywasm.ReplaceHttpRequestHeader(name, v); err != nil {
		logProblem("cannot set "+name, err)
	}
}

// propertyInt returns an integer property (Envoy encodes them as 8 little-endian bytes).
func propertyInt(path []string) (int64, bool) {
	b, err := proxywasm.GetProperty(path)
	if err != nil || len(b) != 8 {
		return 0, false
	}
	return int64(binary.LittleEndian.Uint64(b)), true
}

// idSource makes random trace and span ids with a wyrand generator seeded from the host's entropy, so an
// id costs no host call.
type idSource struct{ state uint64 }

func (g *idSource) seed() {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		binary.LittleEndian.PutUint64(b[:], hostNow())
	}
	g.state = binary.LittleEndian.Uint64(b[:])
}

func (g *idSource) next() uint64 {
	for {
		g.state += 0xa0761d6478bd642f
		hi, lo := bits.Mul64(g.state, g.state^0xe7037ed1a0b428db)
		if v := hi ^ lo; v != 0 {
			return v
		}
	}
}

// logProblem logs a non-fatal problem of the filter itself.
func logProblem(msg string, err error) { proxywasm.LogWarnf("meshtrace: %s: %v", msg, err) }
