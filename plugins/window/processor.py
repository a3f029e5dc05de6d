"""Tumbling windows aligned to the wall clock: min, max, avg, sum, count, first, last per point.

Windows are half-open [start, end) on multiples of `every` since the UNIX epoch (UTC).
A window closes when a later reading of the same point arrives or when `flush(now)`
sees `end + grace <= now`; its aggregates leave as points `<point>.<stat>` stamped `end`.
"""

from __future__ import annotations

from itertools import repeat
import math
from typing import Any, Sequence

import attrs

from sitegate.model import Batch, Quality
from sitegate.plugins import ProcessorContext
from sitegate.structure import Duration

STATS = ("min", "max", "avg", "sum", "count", "first", "last")
_UNCERTAIN = int(Quality.UNCERTAIN)
_BAD = int(Quality.BAD)

# Slots of a window's state list (a list, not an object: attribute access is the hot path's cost).
START, END, COUNT, SUM, MIN, MAX, FIRST, FIRST_T, LAST, LAST_T, UNCERTAIN = range(11)


def _positive(_, attribute, value):
    if not float(value) > 0:
        raise ValueError(f"{attribute.name}: expected a positive duration, got {float(value)!r}")


def _stats(_, attribute, value):
    bad = [s for s in value if s not in STATS]
    if bad or not value:
        raise ValueError(f"keep: expected stats from {', '.join(STATS)}, got {value!r}")
    if len(set(value)) != len(value):
        raise ValueError(f"keep: {value!r} names a stat twice")


@attrs.frozen
class WindowParams:
    every: Duration = attrs.field(validator=_positive)
    keep: list[str] = attrs.field(factory=lambda: ["min", "max", "avg"], validator=_stats)
    # How long after a window's end flush() still waits for its stragglers (readings in flight).
    grace: Duration = Duration(1.0)


class Window:
    """One route step: per-device dicts of point -> window state (see the slot names above)."""

    def __init__(self, params: WindowParams, ctx: ProcessorContext | None = None):
        self.every = float(params.every)
        self.keep = tuple(params.keep)
        self.grace = float(params.grace)
        self.states: dict[str, dict[str, list[Any]]] = {}
        self.sources: dict[str, str] = {}
        self._names: dict[str, tuple[str, ...]] = {}
        # Where each kept stat lives in the state list; avg (None) is the only one computed.
        self._slots = tuple({"min": MIN, "max": MAX, "sum": SUM, "count": COUNT, "first": FIRST,
                             "last": LAST}.get(s) for s in self.keep)
        # No open window ends before this: flush() has nothing to do until then. Windows are
        # aligned, so most points share one end and flush scans once per window, not every call.
        self._next_due = math.inf
        self.late = 0          # readings for a window already closed: dropped, counted
        self.skipped = 0       # bad quality or not a number

    # --- closing -------------------------------------------------------------------
    def _close(self, p: str, st: list[Any], out: tuple[list, list, list, list]) -> None:
        """Append the window's aggregates to `out` (points, values, timestamps, qualities)."""
        count = st[COUNT]
        if count:
            names = self._names.get(p)
            if names is None:
                names = self._names[p] = tuple(f"{p}.{s}" for s in self.keep)
            pts, vals, ts, qs = out
            end = st[END]
            q = _UNCERTAIN if st[UNCERTAIN] else 0
            for name, slot in zip(names, self._slots):
                pts.append(name)
                vals.append(st[SUM] / count if slot is None else st[slot])
                ts.append(end)
                qs.append(q)
        # An empty interval: anything older than `end` is now late, anything newer opens a window.
        st[START] = st[END]
        st[COUNT] = 0

    def _open(self, states: dict[str, list[Any]], p: str, v: Any, t: float, q: int) -> None:
        try:
            nan = v != v
            v + 0
        except TypeError:
            nan = True
        if nan:
            self.skipped += 1
            return
        every = self.every
        k = math.floor(t / every)
        # Boundaries are k * every, the same float whether it ends one window or starts the next;
        # t / every may round across an integer (4.3 / 0.1 = 42.99...), so settle k on them.
        if t >= (k + 1) * every:
            k += 1
        elif t < k * every:
            k -= 1
        start, end = k * every, (k + 1) * every
        states[p] = [start, end, 1, v, v, v, v, t, v, t, q >= _UNCERTAIN]
        if end < self._next_due:
            self._next_due = end

    # --- the route step ------------------------------------------------------------
    def process(self, batch: Batch) -> Batch | None:
        device = batch.device
        states = self.states.get(device)
        if states is None:
            states = self.states[device] = {}
            self.sources[device] = batch.source
        points, values, stamps, quality = batch.points, batch.values, batch.timestamps, batch.quality
        out: tuple[list, list, list, list] | None = None
        if quality is None:
            quality = repeat(0)             # no column: every reading good
        # The hot loop: literal slot numbers (START=0, END=1, COUNT=2, SUM=3, MIN=4, MAX=5,
        # LAST=8, LAST_T=9) instead of the named globals save a lookup per access.
        for p, v, t, q in zip(points, values, stamps, quality):
            st = states.get(p)
            if st is None or t >= st[1] or t < st[0] or q:
                if q >= _BAD:
                    self.skipped += 1
                    continue
                if st is None:
                    self._open(states, p, v, t, q)
                    continue
                if t >= st[1]:
                    if out is None:
                        out = ([], [], [], [])
                    self._close(p, st, out)
                    self._open(states, p, v, t, q)
                    continue
                if t < st[0]:
                    self.late += 1
                    continue
                if q >= _UNCERTAIN:
                    st[UNCERTAIN] = True
            try:
                s = st[3] + v
            except TypeError:
                self.skipped += 1
                continue
            if s != s:                  # NaN (or inf - inf) would poison sum and avg: skip it
                self.skipped += 1
                continue
            st[3] = s
            st[2] += 1
            if v < st[4]:
                st[4] = v
            elif v > st[5]:
                st[5] = v
            if t >= st[9]:
                st[8] = v
                st[9] = t
            elif t < st[FIRST_T]:
                st[FIRST] = v
                st[FIRST_T] = t
        if out is None or not out[0]:
            return None
        pts, vals, ts, qs = out
        return Batch(device, pts, vals, ts, qs if any(qs) else None, batch.source)

    def flush(self, now: float) -> Sequence[Batch]:
        """Close every window whose end is at least `grace` in the past."""
        horizon = now - self.grace
        batches = []
        if horizon < self._next_due:
            return batches
        next_due = math.inf
        for device, states in self.states.items():
            out: tuple[list, list, list, list] = ([], [], [], [])
            for p, st in states.items():
                end = st[END]
                if st[START] < end:
                    if end <= horizon:
                        self._close(p, st, out)
                    elif end < next_due:
                        next_due = end
            if out[0]:
                pts, vals, ts, qs = out
                batches.append(Batch(device, pts, vals, ts, qs if any(qs) else None, self.sources.get(device, "")))
        self._next_due = next_due
        return batches


def create(params: WindowParams, ctx: ProcessorContext) -> Window:
    return Window(params, ctx)
