"""Routes compiled for the hot path: glob matching on `device/point` with a decision cache.

The site file's routes (config/schema.py Route) become `CompiledRoute`s once per
apply; which routes a batch takes is decided once per (device, points) shape
and cached, so a steady stream costs one dict lookup per batch. stage.py runs
the processors; privacy.py decides what may leave the site raw.
"""

from __future__ import annotations

import fnmatch
import re
from typing import Any, Callable, Sequence

import attrs

from ..model import Batch, PointInfo
from .wal import PRIORITY_OF

# How many batch shapes to remember before starting over (a bound, not a tuning knob).
CACHE_LIMIT = 50_000


@attrs.define(eq=False)
class CompiledRoute:
    """One route ready to run: its matcher, processors (created once), priority and sinks."""

    index: int
    name: str
    globs: tuple[str, ...]
    tags: frozenset[str]
    prio: int
    sinks: tuple[str, ...]
    steps: list[Any] = attrs.Factory(list)          # Processor objects, in order
    _regex: re.Pattern | None = None
    # Readings into and out of each step (per batch, not per reading): what each processor filtered.
    step_in: list[int] = attrs.Factory(list)
    step_out: list[int] = attrs.Factory(list)

    def __attrs_post_init__(self) -> None:
        self.step_in = [0] * len(self.steps)
        self.step_out = [0] * len(self.steps)
        self._regex = re.compile("|".join(f"(?:{fnmatch.translate(g)})" for g in self.globs)) if self.globs else None

    def matches(self, device: str, point: str, info: PointInfo | None) -> bool:
        if self._regex is None or self._regex.match(f"{device}/{point}") is None:
            return False
        if self.tags and (info is None or not self.tags.issubset(info.tags)):
            return False
        return True


def compile_route(index: int, route: Any) -> CompiledRoute:
    return CompiledRoute(index=index, name=route.name or f"route{index}", globs=tuple(route.from_),
                         tags=frozenset(route.tags), prio=PRIORITY_OF[route.priority], sinks=tuple(route.to))


# A decision: for each route that takes some of the batch, the indices it takes (None: all).
Decision = list[tuple[CompiledRoute, list[int] | None]]


class RouteTable:
    """The compiled routes of a site and the per-shape decision cache."""

    def __init__(self, routes: Sequence[CompiledRoute], point_info: Callable[[str, str], PointInfo | None]):
        self.routes = list(routes)
        self.point_info = point_info
        self._cache: dict[tuple[str, tuple[str, ...]], Decision] = {}
        self.generation = 0          # bumped by invalidate(): caches built on decisions compare it
        self.unrouted = 0            # readings no route took

    def invalidate(self) -> None:
        """Forget decisions (routes or point tags changed)."""
        self._cache.clear()
        self.generation += 1

    def decide(self, batch: Batch) -> Decision:
        points = batch.points
        key = (batch.device, points if isinstance(points, tuple) else tuple(points))
        decision = self._cache.get(key)
        if decision is None:
            decision = self._decide(batch.device, key[1])
            if len(self._cache) >= CACHE_LIMIT:
                self._cache.clear()
            self._cache[key] = decision
        return decision

    def _decide(self, device: str, points: tuple[str, ...]) -> Decision:
        out: Decision = []
        info = self.point_info
        for route in self.routes:
            idx = [i for i, p in enumerate(points) if route.matches(device, p, info(device, p))]
            if not idx:
                continue
            out.append((route, None if len(idx) == len(points) else idx))
        return out

    def sinks(self) -> set[str]:
        return {s for r in self.routes for s in r.sinks}
