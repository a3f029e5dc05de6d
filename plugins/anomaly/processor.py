"""Anomaly flagging with an EWMA z-score per (device, point), robust to single spikes.

Each reading is scored against the exponentially weighted mean and variance of the
readings before it; |z| > threshold flags it (quality UNCERTAIN and/or an `anomaly` event).
The statistics then learn from the reading clipped to mean +- threshold * std, so one spike
does not inflate the variance and hide the next, while a lasting level shift is still adopted.
"""

from __future__ import annotations

import fnmatch
import math
from typing import Any

import attrs

from sitegate.model import Batch, Event, Quality, Severity
from sitegate.plugins import ProcessorContext
from sitegate.structure import Duration

ACTIONS = ("quality", "event", "both")
_UNCERTAIN = int(Quality.UNCERTAIN)
_BAD = int(Quality.BAD)

# Slots of a point's state list.
N, MEAN, VAR, EVENT_AT = range(4)


def _check(predicate, text):
    def check(_, attribute, value):
        if not predicate(value):
            raise ValueError(f"{attribute.name}: expected {text}, got {value!r}")
    return check


@attrs.frozen
class AnomalyParams:
    alpha: float = attrs.field(default=0.05, validator=_check(lambda v: 0 < v <= 1, "a weight in (0, 1]"))
    threshold: float = attrs.field(default=4.0, validator=_check(lambda v: v > 0, "a z-score > 0"))
    warmup: int = attrs.field(default=30, validator=_check(lambda v: v >= 1, "at least 1 reading"))
    action: str = attrs.field(default="quality", validator=_check(lambda v: v in ACTIONS, f"one of {', '.join(ACTIONS)}"))
    min_std: float = attrs.field(default=0.0, validator=_check(lambda v: v >= 0, "a number >= 0"))
    cooldown: Duration = Duration(60)          # at most one event per point per cooldown
    points: list[str] = attrs.Factory(lambda: ["*"])


class Anomaly:
    """One route step: per-device dicts of point -> [n, mean, var, last event time], or None if ignored."""

    def __init__(self, params: AnomalyParams, ctx: ProcessorContext):
        self.alpha = float(params.alpha)
        self.threshold = float(params.threshold)
        self.warmup = params.warmup
        self.min_std = float(params.min_std)
        self.mark = params.action in ("quality", "both")
        self.events = params.action in ("event", "both")
        self.cooldown = float(params.cooldown)
        self.globs = list(params.points)
        self.ctx = ctx
        self.states: dict[str, dict[str, list[Any] | None]] = {}
        self.flagged = 0

    def process(self, batch: Batch) -> Batch | None:
        device = batch.device
        states = self.states.get(device)
        if states is None:
            states = self.states[device] = {}
        points, values, quality = batch.points, batch.values, batch.quality
        alpha, k, warmup, min_std = self.alpha, self.threshold, self.warmup, self.min_std
        new_q: list[int] | None = None
        for i in range(len(points)):
            p = points[i]
            st = states.get(p, False)
            if st is False:
                st = states[p] = [0, 0.0, 0.0, -math.inf] if any(fnmatch.fnmatchcase(p, g) for g in self.globs) else None
            if st is None:
                continue
            q = 0 if quality is None else quality[i]
            x = values[i]
            if q >= _BAD or x.__class__ not in (int, float) or x != x:
                continue
            if st[N] == 0:
                st[N] = 1
                st[MEAN] = float(x)
                continue
            mean = st[MEAN]
            std = math.sqrt(st[VAR])
            if std < min_std:
                std = min_std
            diff = x - mean
            learn = x
            if st[N] >= warmup:
                z = diff / std if std > 0 else (0.0 if diff == 0 else math.copysign(math.inf, diff))
                if z > k or z < -k:
                    self.flagged += 1
                    if self.mark and q < _UNCERTAIN:
                        if new_q is None:
                            new_q = list(quality) if quality is not None else [0] * len(points)
                        new_q[i] = _UNCERTAIN
                    if self.events:
                        self._event(device, p, st, x, z, mean, std, batch.timestamps[i])
                    if std > 0:     # learn from the clipped value; with no spread yet, learn the value itself
                        learn = mean + k * std if diff > 0 else mean - k * std
            d = learn - mean
            incr = alpha * d
            st[MEAN] = mean + incr
            st[VAR] = (1.0 - alpha) * (st[VAR] + d * incr)
            st[N] += 1
        if new_q is None:
            return batch
        return attrs.evolve(batch, quality=new_q)

    def _event(self, device: str, point: str, st: list[Any], x: float, z: float, mean: float, std: float,
               t: float) -> None:
        if t - st[EVENT_AT] < self.cooldown:
            return
        st[EVENT_AT] = t
        self.ctx.emit(Event(
            "anomaly", source=self.ctx.route, device=device, point=point, severity=Severity.WARNING,
            message=f"{device}/{point} = {x:.6g} is {abs(z):.1f} standard deviations from its recent mean {mean:.4g}",
            data={"value": x, "z": z if math.isfinite(z) else str(z), "mean": mean, "std": std}, ts=t))


def create(params: AnomalyParams, ctx: ProcessorContext) -> Anomaly:
    return Anomaly(params, ctx)
