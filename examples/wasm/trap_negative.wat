;; BAD on purpose (sometimes): passes readings through, but traps (`unreachable`) on a
;; batch holding a negative value. Lets tests mix good and failing batches.
(module
  (memory (export "memory") 1)
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "process") (param $f i32) (param $n i32) (result i32)
    (local $i i32) (local $vals i32)
    (local.set $vals (i32.add (local.get $f) (i32.const 8)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (if (f64.lt (f64.load (i32.add (local.get $vals) (i32.shl (local.get $i) (i32.const 3)))) (f64.const 0))
          (then unreachable))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (memory.copy (i32.add (local.get $vals) (i32.mul (local.get $n) (i32.const 24)))
                 (local.get $vals) (i32.mul (local.get $n) (i32.const 24)))
    (local.get $n))
)
