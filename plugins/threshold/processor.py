"""Threshold alerts: warning and critical levels above and/or below, with hysteresis and cooldown.

Readings pass through unchanged; level changes go out at once as `alert` events through
`ctx.emit` (the fast path). Level per (device, point) is signed: +2 critical above,
+1 warning above, 0 normal, -1 warning below, -2 critical below.
"""

from __future__ import annotations

import fnmatch
import math
from typing import Any, Sequence

import attrs

from sitegate.model import Batch, Event, Quality, Severity
from sitegate.plugins import ProcessorContext
from sitegate.structure import Duration

_BAD = int(Quality.BAD)
LEVEL_NAMES = {2: "critical", 1: "warning", 0: "normal", -1: "warning", -2: "critical"}
_SEVERITY = {2: Severity.CRITICAL, 1: Severity.WARNING, 0: Severity.INFO}

# Slots of a point's state list.
LEVEL, ANNOUNCED, EMITTED_AT, VALUE, VALUE_T = range(5)


@attrs.frozen
class Levels:
    warning: float | None = None
    critical: float | None = None

    def __attrs_post_init__(self):
        if self.warning is None and self.critical is None:
            raise ValueError("give warning, critical or both")


def _non_negative(_, attribute, value):
    if not float(value) >= 0:
        raise ValueError(f"{attribute.name}: expected a number >= 0, got {value!r}")


@attrs.frozen
class ThresholdParams:
    above: Levels | None = None
    below: Levels | None = None
    hysteresis: float = attrs.field(default=0.0, validator=_non_negative)
    cooldown: Duration = attrs.field(default=Duration(0), validator=_non_negative)
    points: list[str] = attrs.Factory(lambda: ["*"])     # globs on the point name

    def __attrs_post_init__(self):
        a, b = self.above, self.below
        if a is None and b is None:
            raise ValueError("give above, below or both")
        if a and a.warning is not None and a.critical is not None and not a.warning < a.critical:
            raise ValueError(f"above: warning ({a.warning}) must be lower than critical ({a.critical})")
        if b and b.warning is not None and b.critical is not None and not b.warning > b.critical:
            raise ValueError(f"below: warning ({b.warning}) must be higher than critical ({b.critical})")
        if a and b:
            lowest_above = min(x for x in (a.warning, a.critical) if x is not None)
            highest_below = max(x for x in (b.warning, b.critical) if x is not None)
            if not highest_below < lowest_above:
                raise ValueError(f"below levels ({highest_below}) must lie under above levels ({lowest_above})")


class Threshold:
    """One route step; per-device dicts of point -> state list, or None for points it ignores."""

    def __init__(self, params: ThresholdParams, ctx: ProcessorContext):
        a, b = params.above, params.below
        self.aw = a.warning if a and a.warning is not None else None
        self.ac = a.critical if a and a.critical is not None else None
        self.bw = b.warning if b and b.warning is not None else None
        self.bc = b.critical if b and b.critical is not None else None
        # The normal band [lo, hi]: a reading inside it with nothing pending costs two compares.
        self.hi = min((x for x in (self.aw, self.ac) if x is not None), default=math.inf)
        self.lo = max((x for x in (self.bw, self.bc) if x is not None), default=-math.inf)
        self.h = float(params.hysteresis)
        self.cooldown = float(params.cooldown)
        self.globs = list(params.points)
        self.ctx = ctx
        self.states: dict[str, dict[str, list[Any] | None]] = {}
        self.alerts = 0
        self.held = 0      # level changes not announced at once because of the cooldown
        self._waiting: set[tuple[str, str]] = set()    # points with a held change, for flush

    def level(self, v: float, cur: int) -> int:
        """The level of `v` for a point now at `cur`: leaving a level needs `hysteresis` of margin."""
        h = self.h
        if self.ac is not None and v > self.ac - (h if cur == 2 else 0.0):
            return 2
        if self.aw is not None and v > self.aw - (h if cur >= 1 else 0.0):
            return 1
        if self.bc is not None and v < self.bc + (h if cur == -2 else 0.0):
            return -2
        if self.bw is not None and v < self.bw + (h if cur <= -1 else 0.0):
            return -1
        return 0

    def _watch(self, states: dict[str, list[Any] | None], p: str) -> list[Any] | None:
        st = [0, 0, -math.inf, None, 0.0] if any(fnmatch.fnmatchcase(p, g) for g in self.globs) else None
        states[p] = st
        return st

    def process(self, batch: Batch) -> Batch | None:
        device = batch.device
        states = self.states.get(device)
        if states is None:
            states = self.states[device] = {}
        points, values, stamps, quality = batch.points, batch.values, batch.timestamps, batch.quality
        lo, hi = self.lo, self.hi
        for i in range(len(points)):
            p = points[i]
            st = states.get(p, False)
            if st is False:
                st = self._watch(states, p)
            if st is None:
                continue
            if quality is not None and quality[i] >= _BAD:
                continue                  # a bad reading is not a measurement
            v = values[i]
            try:
                if st[LEVEL] == 0 and st[ANNOUNCED] == 0 and lo <= v <= hi:
                    continue
                if v != v:
                    continue              # NaN compares false everywhere: it would read as "normal"
                new = self.level(v, st[LEVEL])
            except TypeError:
                continue
            st[LEVEL] = new
            st[VALUE] = v
            st[VALUE_T] = t = stamps[i]
            if new != st[ANNOUNCED]:
                self._change(device, p, st, t)
        return batch

    def _change(self, device: str, point: str, st: list[Any], now: float) -> None:
        new, old = st[LEVEL], st[ANNOUNCED]
        # Critical never waits; every other change waits out the cooldown of the last announcement.
        if now - st[EMITTED_AT] >= self.cooldown or (abs(new) == 2 and abs(old) < 2):
            self._announce(device, point, st, now)
        else:
            self.held += 1
            self._waiting.add((device, point))

    def _announce(self, device: str, point: str, st: list[Any], now: float) -> None:
        new, old, v = st[LEVEL], st[ANNOUNCED], st[VALUE]
        st[ANNOUNCED] = new
        st[EMITTED_AT] = now
        self.alerts += 1
        level = LEVEL_NAMES[new]
        direction = "above" if new > 0 else "below" if new < 0 else None
        limit = {2: self.ac, 1: self.aw, -1: self.bw, -2: self.bc}.get(new)
        if new:
            message = f"{device}/{point} = {v:.6g} is {direction} {level} level {limit:g}"
        else:
            message = f"{device}/{point} = {v:.6g} is back to normal (was {LEVEL_NAMES[old]})"   # exact: data
        self.ctx.emit(Event(
            "alert", source=self.ctx.route, device=device, point=point, severity=_SEVERITY[abs(new)],
            message=message,
            data={"level": level, "previous": LEVEL_NAMES[old], "direction": direction, "value": v,
                  "threshold": limit, "reading_ts": st[VALUE_T]},
            ts=now))

    def flush(self, now: float) -> Sequence[Batch]:
        """Announce level changes held back by the cooldown once it has passed."""
        cooldown = self.cooldown
        for key in list(self._waiting):
            device, p = key
            st = self.states[device][p]
            if st[LEVEL] == st[ANNOUNCED]:
                self._waiting.discard(key)          # the flap settled back: nothing to say
            elif now - st[EMITTED_AT] >= cooldown:
                self._waiting.discard(key)
                self._announce(device, p, st, now)
        return []


def create(params: ThresholdParams, ctx: ProcessorContext) -> Threshold:
    return Threshold(params, ctx)
