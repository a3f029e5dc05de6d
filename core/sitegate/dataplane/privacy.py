"""The privacy guardrail: restricted points never reach a non-local sink raw.

A point is restricted when its adapter declares it so (PointInfo.restricted)
or it matches a glob of the site's `storage.privacy.restricted`. Aggregates
of it (`<point>.<stat>`, as the window processor names them) may leave; the
raw readings are withheld from non-local sinks at delivery (delivery.py) and counted.
"""

from __future__ import annotations

import fnmatch
import re
from typing import Callable, Sequence

from ..model import Batch, PointInfo

# Statistic suffixes that may leave the site for a restricted point: ones that do not reproduce an
# individual reading. min, max, first, last and median each ARE some raw reading, so they stay.
# (An average over a window that held one reading is that reading too: keep windows long enough.)
AGGREGATE_STATS = frozenset({"avg", "mean", "sum", "count", "std"})
# Every suffix the window processor (and others) use for a statistic of a point.
ALL_STATS = AGGREGATE_STATS | {"min", "max", "first", "last", "median"}


class PrivacyGuard:
    def __init__(self, globs: Sequence[str], allow_raw: bool,
                 point_info: Callable[[str, str], PointInfo | None]):
        self.allow_raw = allow_raw
        self.point_info = point_info
        self._regex = re.compile("|".join(f"(?:{fnmatch.translate(g)})" for g in globs)) if globs else None
        self._cache: dict[tuple[str, str], bool] = {}
        self.withheld = 0

    def invalidate(self) -> None:
        self._cache.clear()

    def restricted(self, device: str, point: str) -> bool:
        """True when `point` of `device` is a raw reading that must stay on site."""
        key = (device, point)
        hit = self._cache.get(key)
        if hit is None:
            hit = self._cache[key] = self._restricted(device, point)
        return hit

    def _restricted(self, device: str, point: str) -> bool:
        info = self.point_info(device, point)
        if info is not None and info.restricted:
            return True
        if info is None:
            base, _, stat = point.rpartition(".")
            if base and stat in ALL_STATS:
                if stat in AGGREGATE_STATS:
                    return False                             # a statistic: allowed out
                return self.restricted(device, base)         # one raw reading of `base` by another name
        return self._regex is not None and self._regex.match(f"{device}/{point}") is not None

    def active(self) -> bool:
        """Whether any point could be restricted (else delivery skips the check entirely)."""
        return not self.allow_raw

    def filter(self, batch: Batch) -> list[Batch]:
        """`batch` without its restricted raw readings, as contiguous runs so every reading keeps
        its own sequence number (and msgId); counts what it withheld."""
        device = batch.device
        points = batch.points
        flags = [self.restricted(device, p) for p in points]
        if not any(flags):
            return [batch]
        self.withheld += sum(flags)
        out: list[Batch] = []
        start = None
        for i, bad in enumerate(flags + [True]):
            if not bad and start is None:
                start = i
            elif bad and start is not None:
                part = batch.select(range(start, i))
                out.append(Batch(device, part.points, part.values, part.timestamps, part.quality,
                                 batch.source, batch.seq + start))
                start = None
        return out
