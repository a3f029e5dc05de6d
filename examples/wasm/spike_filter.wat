;; Spike filter (sitegate WASM ABI 1): a reading that jumps more than `max_step` from its
;; point's last good value is dropped and reported as an event (severity 1, code 1);
;; every other reading passes unchanged and becomes the point's last good value.
(module
  (memory (export "memory") 1)
  (global $max_step (export "config.max_step") (mut f64) (f64.const 5))
  (global $max_points (export "max_points") (mut i32) (i32.const 1024))
  (global $heap (mut i32) (i32.const 1024))
  (global $state (mut i32) (i32.const 0))     ;; per point: f64 last value, i32 seen, i32 pad

  ;; Bump allocator: 8-aligned, grows memory as needed; 0 when it cannot.
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

  ;; Settings are in the globals already; allocate the per-point state (fresh memory is zero).
  (func (export "init") (param $json i32) (param $len i32) (result i32)
    (if (f64.lt (global.get $max_step) (f64.const 0)) (then (return (i32.const 1))))
    (global.set $state (call $alloc (i32.shl (global.get $max_points) (i32.const 4))))
    (if (result i32) (global.get $state) (then (i32.const 0)) (else (i32.const 2))))

  (func (export "process") (param $f i32) (param $n i32) (result i32)
    (local $i i32) (local $m i32) (local $nev i32) (local $in i32) (local $out i32) (local $ev i32)
    (local $id i32) (local $v f64) (local $s i32) (local $e i32)
    (local.set $in (i32.add (local.get $f) (i32.const 8)))                            ;; in_values
    (local.set $out (i32.add (local.get $in) (i32.mul (local.get $n) (i32.const 24)))) ;; out_values
    (local.set $ev (i32.add (local.get $out) (i32.mul (local.get $n) (i32.const 24)))) ;; events
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $v (f64.load (i32.add (local.get $in) (i32.shl (local.get $i) (i32.const 3)))))
        ;; in_points[i] at in + 16n + 4i
        (local.set $id (i32.load (i32.add (i32.add (local.get $in) (i32.shl (local.get $n) (i32.const 4)))
                                          (i32.shl (local.get $i) (i32.const 2)))))
        (local.set $s (i32.add (global.get $state) (i32.shl (local.get $id) (i32.const 4))))
        (if (i32.and (i32.load offset=8 (local.get $s))
                     (f64.gt (f64.abs (f64.sub (local.get $v) (f64.load (local.get $s)))) (global.get $max_step)))
          (then   ;; a spike: event record {point, severity 1, code 1, 0, value, ts}
            (local.set $e (i32.add (local.get $ev) (i32.shl (local.get $nev) (i32.const 5))))
            (i32.store (local.get $e) (local.get $id))
            (i32.store offset=4 (local.get $e) (i32.const 1))
            (i32.store offset=8 (local.get $e) (i32.const 1))
            (f64.store offset=16 (local.get $e) (local.get $v))
            (f64.store offset=24 (local.get $e)      ;; in_ts[i] at in + 8n + 8i
              (f64.load (i32.add (i32.add (local.get $in) (i32.shl (local.get $n) (i32.const 3)))
                                 (i32.shl (local.get $i) (i32.const 3)))))
            (local.set $nev (i32.add (local.get $nev) (i32.const 1))))
          (else   ;; keep: remember it, copy reading i to output slot m (value, ts, point, quality)
            (f64.store (local.get $s) (local.get $v))
            (i32.store offset=8 (local.get $s) (i32.const 1))
            (f64.store (i32.add (local.get $out) (i32.shl (local.get $m) (i32.const 3))) (local.get $v))
            (i64.store (i32.add (i32.add (local.get $out) (i32.shl (local.get $n) (i32.const 3)))
                                (i32.shl (local.get $m) (i32.const 3)))
                       (i64.load (i32.add (i32.add (local.get $in) (i32.shl (local.get $n) (i32.const 3)))
                                          (i32.shl (local.get $i) (i32.const 3)))))
            (i32.store (i32.add (i32.add (local.get $out) (i32.shl (local.get $n) (i32.const 4)))
                                (i32.shl (local.get $m) (i32.const 2)))
                       (local.get $id))
            (i32.store (i32.add (i32.add (local.get $out) (i32.mul (local.get $n) (i32.const 20)))
                                (i32.shl (local.get $m) (i32.const 2)))
                       (i32.load (i32.add (i32.add (local.get $in) (i32.mul (local.get $n) (i32.const 20)))
                                          (i32.shl (local.get $i) (i32.const 2)))))
            (local.set $m (i32.add (local.get $m) (i32.const 1)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (i32.store (local.get $f) (local.get $nev))    ;; events_n
    (local.get $m))
)
