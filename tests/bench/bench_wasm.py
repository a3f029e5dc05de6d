"""Readings/s through the `wasm` processor running examples/wasm/moving_average.wat on batches of 1,000.

Baseline, measured in the same run: the same moving average (same running sum, same
window, same output) as a plain Python processor. Also reported: the per-batch boundary
cost (columns into linear memory and back, ids, output Batch) against the time spent
inside the module. Times are the thread's CPU time, so other processes on the machine do
not count against the figure; wasm runs on this thread too (wasmtime calls in-thread).
"""

from __future__ import annotations

import math
import sys
import time
from collections import deque
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
POINTS, SAMPLES, BATCHES, WINDOW = 100, 10, 200, 10     # 1,000 readings a batch, 200k a pass
PASSES = 3
TARGET = 1.0


class PyMovingAverage:
    """The baseline: what a careful author writes in Python (per (device, point) sum and ring)."""

    def __init__(self, window: int):
        self.window = window
        self.states: dict[str, dict[str, list]] = {}

    def process(self, batch):
        from sitegate.model import Batch

        states = self.states.get(batch.device)
        if states is None:
            states = self.states[batch.device] = {}
        w = self.window
        out = []
        append = out.append
        quality = batch.quality or (0,) * len(batch)
        for p, v, q in zip(batch.points, batch.values, quality):
            if q >= 0x80:           # a bad reading is never a measurement: passed, not averaged
                append(v)
                continue
            st = states.get(p)
            if st is None:
                st = states[p] = [0.0, deque()]
            ring = st[1]
            total = st[0]
            if len(ring) == w:
                total -= ring.popleft()
            ring.append(v)
            total += v
            st[0] = total
            append(total / len(ring))
        return Batch(batch.device, batch.points, out, batch.timestamps, batch.quality, batch.source)


def _batches():
    from sitegate.model import Batch

    names = [f"p{i}" for i in range(POINTS)]
    points = names * SAMPLES
    out = []
    for b in range(BATCHES):
        t0 = 1_700_000_000.0 + b * SAMPLES
        values = [20.0 + 5.0 * math.sin((b * SAMPLES + s) / 7.0 + i) for s in range(SAMPLES) for i in range(POINTS)]
        stamps = [t0 + s for s in range(SAMPLES) for _ in range(POINTS)]
        out.append(Batch(f"dev{b % 4}", points, values, stamps, None, "bench"))
    return out


def _timed(step, batches) -> float:
    process = step.process
    t0 = time.thread_time()
    for b in batches:
        process(b)
    return time.thread_time() - t0


def _ctx():
    from sitegate.plugins import ProcessorContext
    return ProcessorContext(site="bench", route="bench", emit=lambda e: None, clock=time.time)


def _wasm_step():
    from sitegate.structure import structure
    from plugins.wasm.processor import WasmParams, WasmProcessor

    params = structure({"module_path": str(REPO / "examples" / "wasm" / "moving_average.wat"), "unsigned_dev": True,
                        "config": {"window": WINDOW}}, WasmParams)
    return WasmProcessor(params, _ctx())


def run() -> list[dict]:
    sys.path.insert(0, str(REPO))
    import logging
    logging.getLogger("plugins.wasm.sources").setLevel(logging.ERROR)   # the unsigned-module warning
    batches = _batches()
    n = len(batches) * POINTS * SAMPLES

    # Same output first: a benchmark of two different computations would compare nothing.
    a, b = _wasm_step(), PyMovingAverage(WINDOW)
    for batch in batches[:20]:
        if a.process(batch).values != b.process(batch).values:
            raise AssertionError("wasm and Python moving averages disagree")

    wasm_t = py_t = math.inf
    for _ in range(PASSES):
        wasm_t = min(wasm_t, _timed(_wasm_step(), batches))
        py_t = min(py_t, _timed(PyMovingAverage(WINDOW), batches))

    # Where the wasm step's time goes: the module call alone, on the same frames.
    step = _wasm_step()
    step.process(batches[0])
    sandbox = step.sandbox
    from array import array
    from plugins.wasm import abi
    inputs = []
    for batch in batches:
        ids = step.ids.column(batch.device, batch.points)
        inputs.append(b"".join((array("d", batch.values).tobytes(), array("d", batch.timestamps).tobytes(), ids,
                                abi.quality_column(None, len(batch)))))
    t0 = time.thread_time()
    for blob in inputs:
        sandbox.run(POINTS * SAMPLES, blob)
    inside = (time.thread_time() - t0) / len(batches)
    per_batch = wasm_t / len(batches)
    boundary = per_batch - inside

    rate, base = n / wasm_t, n / py_t
    ratio = rate / base
    return [
        {"name": "wasm_processor", "value": round(rate), "unit": "readings/s", "baseline": round(base),
         "ratio": round(ratio, 2), "target": f">= {TARGET}", "passed": ratio >= TARGET},
        # Boundary = the wasm step's batch time minus the module's own; against the Python step's batch time.
        {"name": "wasm_processor_boundary", "value": round(boundary * 1e6, 1), "unit": "us/batch",
         "baseline": round(py_t / len(batches) * 1e6, 1), "ratio": round(boundary / (py_t / len(batches)), 2),
         "target": "<= 0.5", "passed": boundary <= 0.5 * py_t / len(batches), "module_us": round(inside * 1e6, 1)},
    ]


if __name__ == "__main__":
    for fig in run():
        print(fig)
