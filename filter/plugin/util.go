package plugin

import (
	"strconv"
	"strings"
)

// clip bounds a request-derived attribute value, cutting before a UTF-8 continuation byte.
func clip(v string) string {
	if len(v) <= maxAttrValue {
		return v
	}
	n := maxAttrValue
	for n > 0 && v[n]&0xc0 == 0x80 {
		n--
	}
	return v[:n]
}

// splitHostPort splits "host:port", "[v6]:port", "host" or "v6" into host and port (0 when absent).
func splitHostPort(v string) (string, int64) {
	if v == "" {
		return "", 0
	}
	if v[0] == '[' {
		host, rest, ok := strings.Cut(v[1:], "]")
		if !ok {
			return v, 0
		}
		port, _ := strconv.ParseInt(strings.TrimPrefix(rest, ":"), 10, 32)
		return host, port
	}
	i := strings.LastIndexByte(v, ':')
	if i < 0 || strings.IndexByte(v, ':') != i { // no port, or a bare IPv6 address
		return v, 0
	}
	port, err := strconv.ParseInt(v[i+1:], 10, 32)
	if err != nil || port < 0 || port > 65535 {
		return v[:i], 0
	}
	return v[:i], port
}

// responseFlagNames are Envoy's short response flag names, indexed by bit (StreamInfo::ResponseFlag).
var responseFlagNames = [...]string{
	"LH", "UH", "UT", "LR", "UR", "UF", "UC", "UO", "NR", "DI", "FI", "RL", "UAEX", "RLSE", "DC", "URX", "SI",
	"IH", "DPE", "UMSDR", "RFCF", "NFCF", "DT", "UPE", "NC", "OM", "DF", "DO", "DR",
}

// responseFlags renders Envoy's response flags bit set as its access-log form, e.g. "UF,URX".
func responseFlags(bits uint64) string {
	var b []byte
	for i, name := range responseFlagNames {
		if bits&(1<<i) == 0 {
			continue
		}
		if len(b) > 0 {
			b = append(b, ',')
		}
		b = append(b, name...)
	}
	if len(b) == 0 {
		return "0x" + strconv.FormatUint(bits, 16)
	}
	return string(b)
}
