;; Moving average over the last `window` readings of each point (sitegate WASM ABI 1).
;; Every input reading goes out once, its value replaced by the average of the point's
;; last `window` good values (fewer at the start); time, point and quality pass through.
;; A bad reading (quality >= 0x80) is never a measurement: it passes unchanged, unaveraged.
;; Per-point state (running sum, count, ring position, ring of values) lives in this
;; module's memory, one record per point id, allocated by `init`.
(module
  (memory (export "memory") 1)
  (global $window (export "config.window") (mut i32) (i32.const 5))
  (global $max_points (export "max_points") (mut i32) (i32.const 1024))
  (global $heap (mut i32) (i32.const 1024))
  (global $state (mut i32) (i32.const 0))
  (global $stride (mut i32) (i32.const 0))

  ;; Bump allocator: 8-aligned, grows memory as needed; 0 when memory cannot grow.
  (func $alloc (export "alloc") (param $size i32) (result i32)
    (local $p i32) (local $end i32) (local $need i32)
    (local.set $p (i32.and (i32.add (global.get $heap) (i32.const 7)) (i32.const -8)))
    (local.set $end (i32.add (local.get $p) (local.get $size)))
    (local.set $need (i32.sub (i32.shr_u (i32.add (local.get $end) (i32.const 65535)) (i32.const 16))
                              (memory.size)))
    (if (i32.gt_s (local.get $need) (i32.const 0))
      (then (if (i32.eq (memory.grow (local.get $need)) (i32.const -1))
        (then (return (i32.const 0))))))
    (global.set $heap (local.get $end))
    (local.get $p))

  ;; Config arrives in the `config.*` globals; the JSON copy at $cfg is not needed here.
  (func (export "init") (param $cfg i32) (param $len i32) (result i32)
    (if (i32.lt_s (global.get $window) (i32.const 1)) (then (return (i32.const 1))))
    ;; per point: sum f64 @0, count i32 @8, pos i32 @12, ring f64[window] @16
    (global.set $stride (i32.add (i32.const 16) (i32.shl (global.get $window) (i32.const 3))))
    (global.set $state (call $alloc (i32.mul (global.get $max_points) (global.get $stride))))
    (if (i32.eqz (global.get $state)) (then (return (i32.const 2))))
    (i32.const 0))

  (func (export "process") (param $f i32) (param $n i32) (result i32)
    (local $i i32) (local $vals i32) (local $ts i32) (local $pts i32) (local $q i32)
    (local $ov i32) (local $ot i32) (local $op i32) (local $oq i32)
    (local $s i32) (local $v f64) (local $sum f64) (local $cnt i32) (local $pos i32) (local $slot i32)
    (local $o8 i32) (local $o4 i32) (local $avg f64)
    ;; column bases: inputs then outputs, each column n long (see docs/wasm-processors.md)
    (local.set $vals (i32.add (local.get $f) (i32.const 8)))
    (local.set $ts (i32.add (local.get $vals) (i32.shl (local.get $n) (i32.const 3))))
    (local.set $pts (i32.add (local.get $ts) (i32.shl (local.get $n) (i32.const 3))))
    (local.set $q (i32.add (local.get $pts) (i32.shl (local.get $n) (i32.const 2))))
    (local.set $ov (i32.add (local.get $q) (i32.shl (local.get $n) (i32.const 2))))
    (local.set $ot (i32.add (local.get $ov) (i32.shl (local.get $n) (i32.const 3))))
    (local.set $op (i32.add (local.get $ot) (i32.shl (local.get $n) (i32.const 3))))
    (local.set $oq (i32.add (local.get $op) (i32.shl (local.get $n) (i32.const 2))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $o8 (i32.shl (local.get $i) (i32.const 3)))
        (local.set $o4 (i32.shl (local.get $i) (i32.const 2)))
        (local.set $s (i32.add (global.get $state)
                               (i32.mul (i32.load (i32.add (local.get $pts) (local.get $o4))) (global.get $stride))))
        (local.set $v (f64.load (i32.add (local.get $vals) (local.get $o8))))
        (if (i32.ge_u (i32.load (i32.add (local.get $q) (local.get $o4))) (i32.const 0x80))
          (then (local.set $avg (local.get $v)))
          (else
        (local.set $sum (f64.load (local.get $s)))
        (local.set $cnt (i32.load offset=8 (local.get $s)))
        (local.set $pos (i32.load offset=12 (local.get $s)))
        (local.set $slot (i32.add (i32.add (local.get $s) (i32.const 16)) (i32.shl (local.get $pos) (i32.const 3))))
        ;; a full window forgets its oldest value, which sits where the new one goes
        (if (i32.eq (local.get $cnt) (global.get $window))
          (then (local.set $sum (f64.sub (local.get $sum) (f64.load (local.get $slot)))))
          (else (local.set $cnt (i32.add (local.get $cnt) (i32.const 1)))))
        (local.set $sum (f64.add (local.get $sum) (local.get $v)))
        (f64.store (local.get $slot) (local.get $v))
        (f64.store (local.get $s) (local.get $sum))
        (i32.store offset=8 (local.get $s) (local.get $cnt))
        (local.set $pos (i32.add (local.get $pos) (i32.const 1)))
        (if (i32.eq (local.get $pos) (global.get $window)) (then (local.set $pos (i32.const 0))))
        (i32.store offset=12 (local.get $s) (local.get $pos))
        (local.set $avg (f64.div (local.get $sum) (f64.convert_i32_u (local.get $cnt))))))
        (f64.store (i32.add (local.get $ov) (local.get $o8)) (local.get $avg))
        (i64.store (i32.add (local.get $ot) (local.get $o8)) (i64.load (i32.add (local.get $ts) (local.get $o8))))
        (i32.store (i32.add (local.get $op) (local.get $o4)) (i32.load (i32.add (local.get $pts) (local.get $o4))))
        (i32.store (i32.add (local.get $oq) (local.get $o4)) (i32.load (i32.add (local.get $q) (local.get $o4))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (local.get $n))
)
