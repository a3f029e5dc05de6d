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


class RouteStage:
    def __init__(self, table: RouteTable, wal: WriteAheadLog, pipeline: "Pipeline",
                 emit: Callable[[Event], None], *, max_pending: int = 200_000):
        self.table = table
        self.wal = wal
        self.pipeline = pipeline
        self.emit = emit
        self.max_pending = max_pending
        self._targets: dict[frozenset[str], str] = {}
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
        decision = self.table.decide(batch)
        if not decision:
            self.table.unrouted += len(batch)
            return []
        now = time.time()
        rows: list[tuple] = []
        untouched: dict[int, set[str]] | None = None
        for route, idx in decision:
            if not route.sinks:
                if route.steps:    # processing only (alerts): run it, store nothing
                    self._run_steps(route, 0, [batch if idx is None else batch.select(idx)])
                continue
            if idx is None and not route.steps:
                # Several raw routes of one priority share one record: one copy, one msgId per reading.
                if untouched is None:
                    untouched = {}
                untouched.setdefault(route.prio, set()).update(route.sinks)
                continue
            if not route.steps:
                # Some points of the batch, untouched: contiguous runs keep their sequence numbers.
                for part in runs(batch, idx):
                    rows.append(self._row(route.prio, self._targets_of(route.sinks), part, now, keep_seq=True))
                continue
            sub = batch if idx is None else batch.select(idx)
            for out in self._run_steps(route, 0, [sub]):
                rows.append(self._row(route.prio, self._targets_of(route.sinks), out, now, keep_seq=out is batch))
        if untouched:
            for prio, sinks in untouched.items():
                rows.append(self._row(prio, self._targets_of(sinks), batch, now, keep_seq=True))
        return rows

    def _row(self, prio: int, targets: str, b: Batch, now: float, *, keep_seq: bool) -> tuple:
        n = len(b)
        seq = b.seq if keep_seq and b.seq >= 0 else self.pipeline.allocate(b.device, n)
        body = encode_body(b.points, b.values, b.timestamps, b.quality, b.source)
        self.readings_stored += n
        return (prio, b.device, seq, n, targets, now, len(body), body)

    def _run_steps(self, route: CompiledRoute, start: int, batches: list[Batch]) -> list[Batch]:
        steps = route.steps
        for k in range(start, len(steps)):
            step = steps[k]
            nxt: list[Batch] = []
            for b in batches:
                try:
                    r = step.process(b)
                except Exception as exc:  # noqa: BLE001 - a processor bug must not stop the other routes
                    self._processor_failed(route, k, step, b, exc)
                    continue
                if r is not None and len(r):
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
