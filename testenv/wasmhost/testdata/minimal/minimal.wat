;; A plugin with the bare proxy-wasm exports and no SDK, assembled with binaryen's wasm-as into
;; minimal.wasm. It imports a host function this host does not implement (as a plugin from another SDK
;; may) and fails proxy_on_configure unless that call returns Unimplemented (12).
(module
  (import "env" "proxy_get_log_level" (func $get_log_level (param i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32)
    (i32.eq (call $get_log_level (i32.const 0)) (i32.const 12)))
  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_log") (param i32))
  (func (export "proxy_on_delete") (param i32))
  ;; A stream callback that traps: the host must return the trap as an error.
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (unreachable))
)
