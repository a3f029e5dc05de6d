"""Deadband (report on change): pass a reading only when it moved far enough from the last one passed.

State is the last reported reading per (device, point); `flush(now)` re-reports a
point that has been quiet for `max_silence` while newer, suppressed readings exist.
"""

from __future__ import annotations

from itertools import repeat
import math
from typing import Any, Sequence

import attrs

from sitegate.model import Batch
from sitegate.plugins import ProcessorContext
from sitegate.structure import Duration

_INF = math.inf


def _non_negative(_, attribute, value):
    if value is not None and not value >= 0:
        raise ValueError(f"{attribute.name}: expected a number >= 0, got {value!r}")


@attrs.frozen
class DeadbandParams:
    """`abs` and/or `percent`: a reading passes when it moved by at least either of them."""

    abs: float | None = attrs.field(default=None, validator=_non_negative)
    percent: float | None = attrs.field(default=None, validator=_non_negative)
    max_silence: Duration | None = None

    def __attrs_post_init__(self):
        if self.abs is None and self.percent is None:
            raise ValueError("give abs, percent or both (abs: 0 reports every change)")


class Deadband:
    """One route step. Per-device dicts of point -> [reported value, reported at, quality, pending].

    `pending` is the latest suppressed (value, timestamp, quality), kept only with max_silence.
    """

    def __init__(self, params: DeadbandParams, ctx: ProcessorContext | None = None):
        self.abs = _INF if params.abs is None else float(params.abs)
        # Percent of the last reported value's magnitude, compared as d * 100 >= pct * |last| so that
        # 10 % of 110 is exactly 11. inf * 0 is nan, which never compares >=: "no percent" stays inert.
        self.pct = _INF if params.percent is None else float(params.percent)
        self.silence = _INF if params.max_silence is None else float(params.max_silence)
        self.states: dict[str, dict[str, list[Any]]] = {}
        self.sources: dict[str, str] = {}     # device -> source of its batches, for re-reports
        # No point with a pending re-report was reported before this time: until that is
        # `max_silence` ago, flush() has nothing to do (quiet points re-reported together
        # stay together, so a big site scans about once per max_silence, not every second).
        self._oldest = _INF
        self.passed = 0
        self.suppressed = 0

    def process(self, batch: Batch) -> Batch | None:
        states = self.states.get(batch.device)
        if states is None:
            states = self.states[batch.device] = {}
            self.sources[batch.device] = batch.source
        points, values, stamps, quality = batch.points, batch.values, batch.timestamps, batch.quality
        keep: list[int] = []
        append = keep.append
        silence, absolute, pct = self.silence, self.abs, self.pct
        track = silence != _INF          # only max_silence needs the latest suppressed reading
        relative = pct != _INF
        oldest = self._oldest
        i = -1
        for p, v, t, q in zip(points, values, stamps, repeat(0) if quality is None else quality):
            i += 1
            st = states.get(p)
            if st is None:
                states[p] = [v, t, q, None]
                append(i)
                continue
            last = st[0]
            if q != st[2] or t - st[1] >= silence:
                report = True
            else:
                try:
                    d = v - last
                    if d < 0:
                        d = -d
                    if d > 0:
                        report = d >= absolute or (relative and d * 100.0 >= pct * (last if last >= 0 else -last))
                    else:
                        report = d != d          # NaN in or NaN before: always worth reporting
                except TypeError:                # strings, None: report on any change
                    report = v != last
            if report:
                st[0] = v
                st[1] = t
                st[2] = q
                st[3] = None
                append(i)
            elif track:
                st[3] = (v, t, q)
                if st[1] < oldest:
                    oldest = st[1]
        self._oldest = oldest
        n = len(points)
        self.passed += len(keep)
        self.suppressed += n - len(keep)
        if len(keep) == n:
            return batch
        if not keep:
            return None
        return batch.select(keep)

    def flush(self, now: float) -> Sequence[Batch]:
        """Re-report the latest suppressed reading of points quiet for `max_silence`."""
        silence = self.silence
        if silence == _INF or now - self._oldest < silence:
            return []
        out = []
        oldest = _INF
        for device, states in self.states.items():
            pts, vals, ts, qs = [], [], [], []
            for p, st in states.items():
                pending = st[3]
                if pending is not None and now - st[1] >= silence:
                    v, t, q = pending
                    pts.append(p)
                    vals.append(v)
                    ts.append(t)
                    qs.append(q)
                    st[0] = v
                    st[1] = now     # silence restarts from the re-report, not the reading's own time
                    st[2] = q
                    st[3] = None
                elif pending is not None and st[1] < oldest:
                    oldest = st[1]
            if pts:
                self.passed += len(pts)
                out.append(Batch(device, pts, vals, ts, qs if any(qs) else None,
                                 self.sources.get(device, "")))
        self._oldest = oldest
        return out


def create(params: DeadbandParams, ctx: ProcessorContext) -> Deadband:
    return Deadband(params, ctx)
