"""Readings/s through the deadband and window processors alone, on one core.

The pipeline target (~200k readings/s through deadband + window into SQLite) leaves these
steps a budget of about 1 µs per reading each. Baseline, measured in the same run: the
cheapest loop that still keeps per-(device, point) state (store the last value in a dict),
i.e. the floor any stateful processor pays in Python. Times are the thread's CPU time, so
other processes sharing the machine do not count against the figure (readings per core-second).
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEVICES, POINTS, ROUNDS = 100, 50, 200        # 1M readings per pass
TARGET = 1_000_000


def _batches():
    from sitegate.model import Batch

    names = [f"p{i}" for i in range(POINTS)]
    out = []
    for r in range(ROUNDS):
        t = 1_700_000_000.0 + r * 0.5          # two samples a second: 1-minute windows hold 120
        for d in range(DEVICES):
            # A slow sine with small steps: the deadband passes roughly one reading in six.
            values = [20.0 + 5.0 * math.sin((r + d + i) / 20.0) for i in range(POINTS)]
            out.append(Batch(f"dev{d}", names, values, [t] * POINTS, None, "bench"))
    return out


def _floor(batches) -> float:
    states: dict[str, dict[str, float]] = {}
    t0 = time.thread_time()
    for b in batches:
        st = states.get(b.device)
        if st is None:
            st = states[b.device] = {}
        points, values = b.points, b.values
        for i in range(len(points)):
            st[points[i]] = values[i]
    return time.thread_time() - t0


def _timed(step, batches) -> float:
    t0 = time.thread_time()
    process = step.process
    for b in batches:
        process(b)
    return time.thread_time() - t0


def run() -> list[dict]:
    sys.path.insert(0, str(REPO))
    from plugins.deadband.processor import Deadband, DeadbandParams
    from plugins.window.processor import Window, WindowParams
    from sitegate.structure import Duration

    batches = _batches()
    n = sum(len(b) for b in batches)
    floor = min(_floor(batches) for _ in range(3))
    figs = []
    makers = {
        "deadband_throughput": lambda: Deadband(DeadbandParams(abs=0.5, max_silence=Duration(60))),
        "window_throughput": lambda: Window(WindowParams(every=Duration(60), keep=["min", "max", "avg"])),
    }
    for name, make in makers.items():
        elapsed = min(_timed(make(), batches) for _ in range(3))
        rate, base = n / elapsed, n / floor
        figs.append({"name": name, "value": round(rate), "unit": "readings/s", "baseline": round(base),
                     "ratio": round(rate / base, 3), "target": f"value>={TARGET}", "passed": rate >= TARGET})
    return figs


if __name__ == "__main__":
    for fig in run():
        print(fig)
