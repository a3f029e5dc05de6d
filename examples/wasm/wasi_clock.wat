;; Imports a WASI function (the clock): refused unless the step says `wasi: true`.
(module
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "process") (param $f i32) (param $n i32) (result i32)
    (drop (call $clock (i32.const 0) (i64.const 1) (i32.const 0)))
    (i32.const 0))
)
