// Package wasmhost is a proxy-wasm host on wazero for tests: it loads a compiled plugin (TinyGo
// -buildmode=c-shared -scheduler=none, or Go GOOS=wasip1 GOARCH=wasm -buildmode=c-shared) and drives it
// the way Envoy does, synchronously, so tests can check what the real .wasm does.
//
// # Why not proxytest
//
// The proxy-wasm Go SDK's proxytest.NewWasmVMContext runs a .wasm only for HTTP contexts (it returns nil
// for TCP contexts and never calls proxy_on_new_connection or the data callbacks) and never calls
// proxy_on_delete, so guest memory grows with every stream and leaks go unnoticed. Its emulator also
// holds a global lock, so two plugin instances cannot run in one test. This host deletes every context,
// covers network contexts, and runs any number of independent instances.
//
// # Lifecycle
//
// Compile compiles once (with a process-wide compilation cache, on disk under the user cache directory);
// Module.Load instantiates a VM: WASI (wasi_snapshot_preview1) is linked, the reactor's _initialize (or a
// command's _start) runs, then the root context is created (id 1) with proxy_on_context_create,
// proxy_on_vm_start and proxy_on_configure; false from either is an error carrying the plugin's warn and
// error logs. Load(ctx, wasm, cfg) does both for a single instance. Host.Done starts the shutdown with
// proxy_on_done; a plugin that returns false finishes later with proxy_done (Host.DoneCalled), typically
// once its last calls are answered. Host.Close runs proxy_on_done (unless Done ran) and proxy_on_delete
// on the root context and releases the instance.
//
// Host.AddRoot adds root contexts to the same VM, as Envoy does when filters from one image share a VM
// (an HTTP and a network filter told apart by "plugin_root_id"); each Root has its own plugin
// configuration, properties, tick period and streams, and calls and queue notifications go back to the
// root that made or registered them.
//
// An HTTPStream (Host.NewHTTPStream) or a Connection (Host.NewConnection) is a stream context. Its
// callbacks are made in Envoy's order; HTTPStream.Complete ends it with proxy_on_log, proxy_on_done and
// proxy_on_delete (Envoy runs the access log before destroying the filters), Connection.Close with
// both connection close callbacks, proxy_on_done, proxy_on_log and proxy_on_delete. Host.LiveContexts
// counts the contexts created and not deleted, the root included, so it proves the plugin deletes its
// state.
//
// # Envoy rules the host enforces
//
// The point of running the compiled plugin is to fail here rather than in Envoy, so the host follows
// Envoy (source/extensions/common/wasm/context.cc) where plugins commonly trip:
//
//   - a header map or body is reachable only from its own callback until that callback returns
//     Continue, or while the stream stays paused; reading the request headers from
//     proxy_on_response_headers is a BadArgument. proxy_on_log sees the request headers and the
//     response headers and trailers again. Resuming the stream drops the request maps;
//   - the plugin configuration is readable only during proxy_on_configure;
//   - a counter takes positive increments only: incrementing by 0 is a BadArgument, on which the Go SDK
//     panics; an empty buffer or header map comes back as a null pointer, which the SDK reports as
//     NotFound;
//   - proxy_set_property outside a stream is NotFound; proxy_continue_stream for the upstream direction
//     is Unimplemented; proxy_http_call needs :method, :path and :authority and a non-negative timeout;
//   - deleting a stream context cancels the HTTP calls it made (they stay unanswered): a plugin that
//     exports from a stream callback loses the call; dispatch from the root context (proxy_on_tick,
//     proxy_on_queue_ready) instead;
//   - the end of upstream data is reported as proxy_on_upstream_connection_close (peer unknown).
//
// # ABI coverage
//
// A plugin must export an ABI version marker, proxy_abi_version_0_2_0 or proxy_abi_version_0_2_1 (the Go
// SDK exports the first; the meshtrace build renames it to the second, see filter/wasmexports; Envoy calls
// the same callbacks for both), and an allocator, malloc or proxy_on_memory_allocate, else Compile fails.
// Every callback export is optional, as in Envoy (proxy-wasm-cpp-host): a callback the module does not
// export is not called, and counts as true for proxy_on_vm_start, proxy_on_configure and proxy_on_done, as
// Continue for the header, body, trailer, new connection and data callbacks, and as nothing for the others
// (proxy_on_context_create, proxy_on_log, proxy_on_delete, proxy_on_tick, proxy_on_queue_ready,
// proxy_on_http_call_response and the connection close callbacks). So a build whose unused callbacks are
// trimmed runs here as it does in Envoy.
//
// The host implements the imports of the proxy-wasm Go SDK (ABI 0.2.x), with Envoy's return codes where
// they are observable:
//
//   - logs: proxy_log (Host.Logs, filtered by Config.LogLevel);
//   - header maps: get/add/replace/remove a value, get/set all pairs, for request and response headers
//     and trailers and the HTTP call response headers and trailers; keys are lower-cased and compared
//     case-insensitively; a map not delivered yet (response headers while handling the request) is
//     BadArgument;
//   - guest memory for what the host hands over: the module's malloc export when it has one, else
//     proxy_on_memory_allocate, in Envoy's order (so a malloc that never frees leaks here as in Envoy);
//   - buffers: proxy_get_buffer_bytes and proxy_set_buffer_bytes for the VM and plugin configuration
//     (read-only), request and response bodies, downstream and upstream data, and the HTTP call response
//     body; writes follow Envoy (start 0 drains and prepends, start at the end appends);
//   - properties: host-wide (Config.Properties, e.g. "plugin_root_id" or "node.metadata.NAME") and per
//     context, addressed by the path segments joined by "."; proxy_set_property writes the stream's
//     properties;
//   - proxy_http_call: requires :method, :path and :authority (and a known cluster when Config.Clusters
//     is set); the call stays pending (Host.PendingHTTPCalls, Host.RespondHTTPCall) or is answered by
//     Config.HTTPCall and delivered on the next Host.Flush or Host.Tick; a failed call is delivered with
//     zero headers, body and trailers, as Envoy does on reset or timeout;
//   - timers: proxy_set_tick_period_milliseconds (Host.TickPeriod), proxy_on_tick via Host.Tick;
//   - metrics: counters (positive increments only), gauges, histograms (Host.Metrics, Host.Histogram);
//   - shared data with compare-and-swap and shared queues (register, resolve, enqueue, dequeue,
//     proxy_on_queue_ready on the next Flush), in a Shared store that hosts may share like VMs of one vm_id;
//   - proxy_set_effective_context, proxy_send_local_response (HTTPStream.LocalReply),
//     proxy_continue_stream and proxy_close_stream (counted per stream), proxy_done;
//   - the clock: Config.Now drives WASI clock_time_get (the Go and TinyGo time.Now) and
//     proxy_get_current_time_nanoseconds;
//   - the environment: Config.Env is what WASI environ_get returns (the Go and TinyGo os.Getenv), as
//     Envoy passes vm_config.environment_variables (host_env_keys and key_values) to the VM;
//   - proxy_call_foreign_function answers NotFound; any other "env" import is linked to a stub that logs an
//     error and returns Unimplemented, so plugins built with other SDKs still load.
//
// # Errors
//
// A guest trap or exit (a Go or TinyGo panic) is returned as an error naming the callback, with the tail of
// the guest's output (where the panic message is); the Host is unusable afterwards and Host.Err keeps the
// error. The host itself never panics on guest input.
//
// # Results and concurrency
//
// Every call into the guest reports its error, so a guest trap is never lost: stream callbacks and
// NewConnection return (Action, error), and Complete, Close, Tick, Flush and RespondHTTPCall return an
// error. Host.Metrics holds counters and gauges; histograms are read with Host.Histogram. A Host is not
// safe for concurrent use: like an Envoy worker's VM it is driven by one goroutine; separate Hosts run in
// parallel.
package wasmhost
