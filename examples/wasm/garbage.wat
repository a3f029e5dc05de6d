;; BAD on purpose: claims more output readings than it was given (n + 5).
(module
  (memory (export "memory") 1)
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "process") (param $f i32) (param $n i32) (result i32)
    (i32.add (local.get $n) (i32.const 5)))
)
