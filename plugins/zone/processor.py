"""Zone rules: conditions on aggregates across several devices, e.g. avg temp > X while max vibration > Y.

The latest good reading of each condition's point per matching device is kept; after each
batch touching them, every condition is aggregated over devices heard from within `stale_after`
of the newest reading. All true → an `alert` event (once, cooldown between activations); false again → cleared.
"""

from __future__ import annotations

import fnmatch
import math
from typing import Any, Sequence

import attrs

from sitegate.model import Batch, Event, Quality, Severity
from sitegate.plugins import ProcessorContext
from sitegate.structure import Duration

AGGREGATES = ("min", "max", "avg", "sum", "count")
SEVERITIES = {"warning": Severity.WARNING, "critical": Severity.CRITICAL}
_BAD = int(Quality.BAD)


def _one_of(choices):
    def check(_, attribute, value):
        if value not in choices:
            raise ValueError(f"{attribute.name}: expected one of {', '.join(choices)}, got {value!r}")
    return check


@attrs.frozen
class Condition:
    point: str                                   # point name (a glob) read on every device of the zone
    agg: str = attrs.field(default="avg", validator=_one_of(AGGREGATES))
    above: float | None = None
    below: float | None = None

    def __attrs_post_init__(self):
        if (self.above is None) == (self.below is None):
            raise ValueError(f"condition on {self.point!r}: give exactly one of above, below")

    def holds(self, value: float) -> bool:
        return value > self.above if self.above is not None else value < self.below

    def describe(self, value: float) -> str:
        op, limit = (">", self.above) if self.above is not None else ("<", self.below)
        return f"{self.agg} {self.point} {value:.6g} {op} {limit}"


def _positive_int(_, attribute, value):
    if value < 1:
        raise ValueError(f"{attribute.name}: expected at least 1, got {value!r}")


@attrs.frozen
class ZoneParams:
    name: str                                    # the rule's name, carried by its events
    when: list[Condition]                        # all must hold at once
    devices: str = "*"                           # glob on device names forming the zone
    severity: str = attrs.field(default="warning", validator=_one_of(tuple(SEVERITIES)))
    stale_after: Duration = Duration(60)         # a device not heard from for this long drops out
    min_devices: int = attrs.field(default=1, validator=_positive_int)   # per condition
    cooldown: Duration = Duration(0)             # between two activations

    def __attrs_post_init__(self):
        if not self.when:
            raise ValueError("when: expected at least one condition")


class Zone:
    """One route step. Readings pass through; `latest[c][device] = (value, ts)` per condition c."""

    def __init__(self, params: ZoneParams, ctx: ProcessorContext):
        self.params = params
        self.ctx = ctx
        self.conditions = list(params.when)
        self.latest: list[dict[str, tuple[float, float]]] = [{} for _ in self.conditions]
        self.stale_after = float(params.stale_after)
        self._zone_devices: dict[str, bool] = {}
        self._point_conditions: dict[str, tuple[int, ...]] = {}
        self.newest = -math.inf       # newest reading time seen: the reference for staleness
        self.active = False           # announced state
        self.activated_at = -math.inf
        self.activations = 0

    def _in_zone(self, device: str) -> bool:
        hit = self._zone_devices.get(device)
        if hit is None:
            hit = self._zone_devices[device] = fnmatch.fnmatchcase(device, self.params.devices)
        return hit

    def _conditions_of(self, point: str) -> tuple[int, ...]:
        idx = self._point_conditions.get(point)
        if idx is None:
            idx = self._point_conditions[point] = tuple(
                i for i, c in enumerate(self.conditions) if fnmatch.fnmatchcase(point, c.point))
        return idx

    def process(self, batch: Batch) -> Batch | None:
        device = batch.device
        if not self._in_zone(device):
            return batch
        points, values, stamps, quality = batch.points, batch.values, batch.timestamps, batch.quality
        touched = False
        for i in range(len(points)):
            idx = self._conditions_of(points[i])
            if not idx:
                continue
            v = values[i]
            if (quality is not None and quality[i] >= _BAD) or v.__class__ not in (int, float) or v != v:
                continue
            t = stamps[i]
            for c in idx:
                self.latest[c][device] = (v, t)
            if t > self.newest:
                self.newest = t
            touched = True
        if touched:
            self._evaluate(self.newest)
        return batch

    def flush(self, now: float) -> Sequence[Batch]:
        """Re-evaluate by the wall clock: devices that went silent drop out and may clear the rule."""
        self._evaluate(max(now, self.newest))
        return []

    def aggregates(self, now: float) -> list[tuple[float, int] | None]:
        """(aggregate, devices) per condition, None where fewer than `min_devices` are fresh."""
        horizon = now - self.stale_after
        out: list[tuple[float, int] | None] = []
        for cond, latest in zip(self.conditions, self.latest):
            vals = [v for v, t in latest.values() if t >= horizon]
            if len(vals) < self.params.min_devices:
                out.append(None)
                continue
            agg = cond.agg
            value = (min(vals) if agg == "min" else max(vals) if agg == "max" else sum(vals) / len(vals)
                     if agg == "avg" else sum(vals) if agg == "sum" else len(vals))
            out.append((value, len(vals)))
        return out

    def _evaluate(self, now: float) -> None:
        aggs = self.aggregates(now)
        holds = all(a is not None and c.holds(a[0]) for c, a in zip(self.conditions, aggs))
        if holds and not self.active:
            if now - self.activated_at < float(self.params.cooldown):
                return
            self.active = True
            self.activated_at = now
            self.activations += 1
            self._emit(now, aggs, SEVERITIES[self.params.severity], self.params.severity)
        elif not holds and self.active:
            self.active = False
            self._emit(now, aggs, Severity.INFO, "normal")

    def _emit(self, now: float, aggs: list[tuple[float, int] | None], severity: Severity, level: str) -> None:
        p = self.params
        details = [{"point": c.point, "agg": c.agg, "value": None if a is None else a[0],
                    "devices": 0 if a is None else a[1], "above": c.above, "below": c.below}
                   for c, a in zip(self.conditions, aggs)]
        if level == "normal":
            message = f"zone rule {p.name!r} over {p.devices} cleared"
        else:
            message = f"zone rule {p.name!r} over {p.devices}: " + " and ".join(
                c.describe(a[0]) for c, a in zip(self.conditions, aggs) if a is not None)
        self.ctx.emit(Event("alert", source=self.ctx.route, severity=severity, message=message,
                            data={"rule": p.name, "zone": p.devices, "level": level, "conditions": details},
                            ts=now))


def create(params: ZoneParams, ctx: ProcessorContext) -> Zone:
    return Zone(params, ctx)
