package plugin

// TrimmedExports are the HTTP callbacks the plugin leaves to the proxy-wasm Go SDK's no-op defaults. The
// SDK exports every callback anyway, and Envoy (proxy-wasm-cpp-host) calls whatever the module exports, so
// each of these costs a VM crossing per request or body chunk for nothing; Envoy skips a callback whose
// export is missing (with the result Continue), so the build drops them from the compiled module
// (filter/internal/wasmtrim, run by `make filter`). TrimmedCallbacks names the methods that would
// implement them: declaring one of those is a mistake as long as its export is trimmed.
var TrimmedExports = []string{
	"proxy_on_request_body",
	"proxy_on_request_trailers",
	"proxy_on_response_headers",
	"proxy_on_response_body",
	"proxy_on_response_trailers",
}

// TrimmedCallbacks maps each of TrimmedExports to the SDK's types.HttpContext method it dispatches to. It
// is a function, not a map variable, so the plugin's wasm builds, which never use it, do not carry it.
func TrimmedCallbacks() map[string]string {
	return map[string]string{
		"proxy_on_request_body":      "OnHttpRequestBody",
		"proxy_on_request_trailers":  "OnHttpRequestTrailers",
		"proxy_on_response_headers":  "OnHttpResponseHeaders",
		"proxy_on_response_body":     "OnHttpResponseBody",
		"proxy_on_response_trailers": "OnHttpResponseTrailers",
	}
}

// SDKABIExport is the ABI version marker the proxy-wasm Go SDK exports.
const SDKABIExport = "proxy_abi_version_0_2_0"

// ABIExport is the ABI version marker the shipped module exports instead of SDKABIExport: Envoy 1.33 and
// later clear the route cache after every request header change made by a plugin of an ABI below 0.2.1.
// proxy-wasm-cpp-host calls the same callbacks under 0.2.0 and 0.2.1; 0.2.1 only adds the import
// proxy_get_log_level, which the plugin does not use.
const ABIExport = "proxy_abi_version_0_2_1"
