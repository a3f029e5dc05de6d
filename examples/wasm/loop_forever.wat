;; BAD on purpose: `process` never returns. The fuel budget stops it.
(module
  (memory (export "memory") 1)
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "process") (param $f i32) (param $n i32) (result i32)
    (loop $forever (br $forever))
    (local.get $n))
)
