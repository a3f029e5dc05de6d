;; BAD on purpose: `process` grows memory by a page at a time without end and writes to
;; each new page. At the page limit memory.grow returns -1, the write lands outside
;; memory and traps: stopped by the page limit.
(module
  (memory (export "memory") 1)
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "process") (param $f i32) (param $n i32) (result i32)
    (loop $more
      (i32.store (i32.shl (memory.grow (i32.const 1)) (i32.const 16)) (i32.const 42))
      (br $more))
    (local.get $n))
)
