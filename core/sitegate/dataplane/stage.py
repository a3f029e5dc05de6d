"""The stage after ingestion: route a batch, run its processors, append the result to the WAL.

`RouteStage` is what pipeline.py calls (`accept` returns after the commit).
Readings a route passes through untouched keep the sequence numbers the
pipeline stamped (so the producer's msgId is the one delivered); readings a
processor produced or picked get fresh numbers from the same per-device counter.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Callable, Sequence

from ..model import Batch, Event, Severity
from .routes import CompiledRoute, RouteTable
from .wal import WriteAheadLog, encode_body, targets_text

if TYPE_CHECKING:  # pragma: no cover
    from ..pipeline import Pipeline

log = logging.getLogger(__name__)


# Kinds of plan steps (see RouteStage._plan).
_WHOLE, _RUNS, _STEPS = "whole", "runs", "steps"


class RouteStage:
    def __init__(self, table: RouteTable, wal: WriteAheadLog, pipeline: "Pipeline",
                 emit: Callable[[Event], None], *, max_pending: int = 200_000):
        self.table = table
        self.wal = wal
        self.pipeline = pipeline
        self.emit = emit
        self.max_pending = max_pending
        self._targets: dict[frozenset[str], str] = {}
        self._plans: dict[tuple[str, tuple[str, ...]], list[tuple]] = {}
        self._plans_gen = -1              # the route table generation the plans were made for
        self.processor_errors = 0
        self.readings_stored = 0

    # --- the Stage protocol ---------------------------------------------------------
    async def accept(self, batch: Batch) -> None:
        rows = self.rows_for(batch)
        if rows:
            await self.wal.append(rows)

    async def accept_many(self, batches: list[Batch]) -> None:
        """Several batches (one poll of many devices), committed together: one wait for one commit."""
        rows: list[tuple] = []
        for b in batches:
            rows.extend(self.rows_for(b))
        if rows:
            await self.wal.append(rows)

    def accept_nowait(self, batch: Batch) -> None:
        rows = self.rows_for(batch)
        if rows:
            self.wal.append_nowait(rows)

    def saturated(self) -> bool:
        return self.wal.pending_readings >= self.max_pending

    # --- routing ----------------------------------------------------------------------
    def _targets_of(self, sinks) -> str:
        key = frozenset(sinks)
        text = self._targets.get(key)
        if text is None:
            text = self._targets[key] = targets_text(key)
        return text

    def rows_for(self, batch: Batch) -> list[tuple]:
        """WAL rows for one stamped batch: one per (route output, priority)."""
        points = batch.points
        key = (batch.device, points if type(points) is tuple else tuple(points))
        plan = self._plans.get(key)
        if plan is None or self._plans_gen != self.table.generation:
            plan = self._plan(batch)
        if not plan:
            self.table.unrouted += len(batch)
            return []
        now = time.time()
        rows: list[tuple] = []
        for kind, route, idx, prio, targets in plan:
            if kind is _WHOLE:
                rows.append(self._row(prio, targets, batch, now, keep_seq=True))
            elif kind is _RUNS:
                for part in runs(batch, idx):
                    rows.append(self._row(prio, targets, part, now, keep_seq=True))
            else:
                sub = batch if idx is None else batch.select(idx)
                outs = self._run_steps(route, 0, [sub])
                if targets:
                    for out in outs:
                        rows.append(self._row(prio, targets, out, now, keep_seq=out is batch))
        return rows

    def _plan(self, batch: Batch) -> list[tuple]:
        """What to do with batches of this shape, worked out once: untouched routes of one priority
        merged into one stored copy, subsets as runs, processed routes through their steps."""
        if self._plans_gen != self.table.generation or len(self._plans) >= 50_000:
            self._plans.clear()
            self._plans_gen = self.table.generation
        plan: list[tuple] = []
        whole: dict[int, set[str]] = {}
        for route, idx in self.table.decide(batch):
            if route.steps:
                plan.append((_STEPS, route, idx, route.prio, self._targets_of(route.sinks) if route.sinks else ""))
            elif not route.sinks:
                continue
            elif idx is None:
                whole.setdefault(route.prio, set()).update(route.sinks)
            else:
                plan.append((_RUNS, route, idx, route.prio, self._targets_of(route.sinks)))
        plan[:0] = [(_WHOLE, None, None, prio, self._targets_of(sinks)) for prio, sinks in whole.items()]
        points = batch.points
        self._plans[(batch.device, points if type(points) is tuple else tuple(points))] = plan
        return plan

    def _row(self, prio: int, targets: str, b: Batch, now: float, *, keep_seq: bool) -> tuple:
        n = len(b)
        seq = b.seq if keep_seq and b.seq >= 0 else self.pipeline.allocate(b.device, n)
        body = encode_body(b.points, b.values, b.timestamps, b.quality, b.source)
        self.readings_stored += n
        return (prio, b.device, seq, n, targets, now, len(body), body)

    def _run_steps(self, route: CompiledRoute, start: int, batches: list[Batch]) -> list[Batch]:
        steps = route.steps
        if len(route.step_in) != len(steps):   # steps set after the route was made
            route.step_in = [0] * len(steps)
            route.step_out = [0] * len(steps)
        if len(batches) == 1:
            # The common case, one batch in and at most one out per step, without building lists.
            b = batches[0]
            k = start
            ins, outs = route.step_in, route.step_out
            try:
                for k in range(start, len(steps)):
                    ins[k] += len(b.points)
                    r = steps[k].process(b)
                    if r is None or not r.points:
                        return []
                    outs[k] += len(r.points)
                    b = r
            except Exception as exc:  # noqa: BLE001 - a processor bug must not stop the other routes
                self._processor_failed(route, k, steps[k], b, exc)
                return []
            return [b]
        for k in range(start, len(steps)):
            step = steps[k]
            nxt: list[Batch] = []
            for b in batches:
                route.step_in[k] += len(b.points)
                try:
                    r = step.process(b)
                except Exception as exc:  # noqa: BLE001
                    self._processor_failed(route, k, step, b, exc)
                    continue
                if r is not None and r.points:
                    route.step_out[k] += len(r.points)
                    nxt.append(r)
            batches = nxt
            if not batches:
                break
        return batches

    def _processor_failed(self, route: CompiledRoute, k: int, step: Any, b: Batch, exc: Exception) -> None:
        self.processor_errors += len(b)
        log.error("route %s step %d (%s) raised on %s: %s", route.name, k, type(step).__name__, b.device, exc,
                  exc_info=exc)
        self.emit(Event("route.processor_error", route.name, b.device, severity=Severity.WARNING,
                        message=f"step {k} ({type(step).__name__}) raised {type(exc).__name__}: {exc}; "
                                f"{len(b)} readings not stored for this route",
                        data={"route": route.name, "step": k, "readings": len(b)}))

    # --- time-driven output (window closes, max-silence re-reports) -------------------
    def flush_rows(self, now: float) -> list[tuple]:
        rows: list[tuple] = []
        stamp = time.time()
        for route in self.table.routes:
            for k, step in enumerate(route.steps):
                flush = getattr(step, "flush", None)
                if flush is None:
                    continue
                try:
                    produced = list(flush(now) or ())
                except Exception as exc:  # noqa: BLE001
                    self._processor_failed(route, k, step, Batch("?", [], [], []), exc)
                    continue
                produced = [b for b in produced if len(b)]
                if not produced:
                    continue
                outs = self._run_steps(route, k + 1, produced)
                if route.sinks:
                    targets = self._targets_of(route.sinks)
                    rows.extend(self._row(route.prio, targets, b, stamp, keep_seq=False) for b in outs)
        return rows


def runs(batch: Batch, idx: Sequence[int]) -> list[Batch]:
    """The readings at `idx` (ascending) as batches of consecutive readings, each with its own seq."""
    out: list[Batch] = []
    q = batch.quality
    start = prev = idx[0]
    for i in (*idx[1:], -1):
        if i == prev + 1:
            prev = i
            continue
        end = prev + 1
        out.append(Batch(batch.device, batch.points[start:end], batch.values[start:end], batch.timestamps[start:end],
                         None if q is None else q[start:end], batch.source, batch.seq + start))
        start = prev = i
    return out
