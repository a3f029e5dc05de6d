"""Counter to delta, for energy meters and other cumulative counters.

Each reading becomes the increase since the previous one of the same (device, point).
A decrease is a wrap-around when the wrapped increase is plausible (at most `max_delta`,
by default half the modulus), otherwise a reset: the meter restarted from 0, so the delta is the new value.
"""

from __future__ import annotations

from typing import Any

import attrs

from sitegate.model import Batch, Event, Quality, Severity
from sitegate.plugins import ProcessorContext

_BAD = int(Quality.BAD)


def _positive(_, attribute, value):
    if value is not None and not value > 0:
        raise ValueError(f"{attribute.name}: expected a number > 0, got {value!r}")


def _shown(v: Any) -> str:
    """A count as a person reads it: integers whole, floats to 10 significant digits (the exact
    value is in the event's data)."""
    return f"{v:.10g}" if isinstance(v, float) else str(v)


@attrs.frozen
class CounterParams:
    modulus: float | None = attrs.field(default=None, validator=_positive)    # e.g. 65536 or 4294967296
    max_delta: float | None = attrs.field(default=None, validator=_positive)  # largest plausible increase
    suffix: str = ""                                                          # output point = point + suffix

    def __attrs_post_init__(self):
        if self.modulus is not None and self.max_delta is not None and self.max_delta >= self.modulus:
            raise ValueError(f"max_delta ({self.max_delta}) must be below modulus ({self.modulus}) "
                             "to tell a wrap from a reset")


class Counter:
    """One route step: per-device dicts of point -> last counter value."""

    def __init__(self, params: CounterParams, ctx: ProcessorContext):
        m = params.modulus
        # An integral modulus stays an int, so integer counters keep integer deltas across a wrap.
        self.modulus = int(m) if m is not None and float(m).is_integer() else m
        if params.max_delta is not None:
            self.max_delta = float(params.max_delta)
        else:
            self.max_delta = params.modulus / 2 if params.modulus is not None else float("inf")
        self.suffix = params.suffix
        self.ctx = ctx
        self.last: dict[str, dict[str, Any]] = {}
        self.wraps = 0
        self.resets = 0
        self.implausible = 0

    def process(self, batch: Batch) -> Batch | None:
        device = batch.device
        last = self.last.get(device)
        if last is None:
            last = self.last[device] = {}
        points, values, stamps, quality = batch.points, batch.values, batch.timestamps, batch.quality
        modulus, max_delta, suffix = self.modulus, self.max_delta, self.suffix
        pts: list[str] = []
        deltas: list[Any] = []
        ts: list[float] = []
        qs: list[int] = []
        for i in range(len(points)):
            q = 0 if quality is None else quality[i]
            if q >= _BAD:
                continue
            p = points[i]
            v = values[i]
            prev = last.get(p)
            try:
                d = v - prev
            except TypeError:
                if prev is None and v.__class__ in (int, float) and v == v:
                    last[p] = v          # the first reading is the baseline: no delta yet
                continue
            if d != d:
                continue                 # NaN: not a count; keep the baseline
            if d < 0:
                if modulus is not None and d + modulus <= max_delta:
                    d += modulus
                    self.wraps += 1
                else:
                    d = v
                    self.resets += 1
                    self._tell("counter.reset", device, p, f"{device}/{p} went from {_shown(prev)} to {_shown(v)}: "
                               f"counted as a reset", prev, v, stamps[i])
            elif d > max_delta:
                last[p] = v
                self.implausible += 1
                self._tell("counter.implausible", device, p, f"{device}/{p} jumped from {_shown(prev)} to {_shown(v)} "
                           f"(more than max_delta {_shown(max_delta)}): not counted, counting restarts from {_shown(v)}",
                           prev, v, stamps[i])
                continue
            last[p] = v
            pts.append(p + suffix)
            deltas.append(d)
            ts.append(stamps[i])
            qs.append(q)
        if not pts:
            return None
        return Batch(device, pts, deltas, ts, qs if any(qs) else None, batch.source)

    def _tell(self, kind: str, device: str, point: str, message: str, prev: Any, value: Any, t: float) -> None:
        self.ctx.emit(Event(kind, source=self.ctx.route, device=device, point=point, severity=Severity.INFO,
                            message=message, data={"previous": prev, "value": value}, ts=t))


def create(params: CounterParams, ctx: ProcessorContext) -> Counter:
    return Counter(params, ctx)
