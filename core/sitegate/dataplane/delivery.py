"""Delivery to one sink: its cursors over the WAL, batching per priority, retries, dead letters.

One `SinkDelivery` task per attached sink (plane.py starts and stops them).
Each priority class has its own cursor, so critical readings never wait
behind a backlog of normal ones; within a class, records go out in commit
order, hence in order per device. A cursor moves only after `deliver` returned.

Pipelining: on a backlog, a sink that says it may be called concurrently
(`concurrent_deliveries` > 1, e.g. MQTT: publishing one call's messages and awaiting
their PUBACKs are separate) gets up to min(that, storage.deliveries_in_flight) calls
in flight, started in commit order one after the other (the sink sends the messages of
concurrent calls in the order the calls began). The cursor moves over completed calls
in order only, never past one still in flight. A pipelined call is tried once: if one
fails, the window drains and delivery goes on from the cursor one call at a time,
with the retries, backoff and poison isolation below (a later call that had already
succeeded is sent again: at least once, as after a crash).
"""

from __future__ import annotations

import logging
import math
import random
import sqlite3
import time
from typing import TYPE_CHECKING, Any, Sequence

import collections

import attrs
import trio

from ..model import Batch, Event, Severity
from ..plugins import SinkError
from .wal import CRITICAL, LOW, NORMAL, PRIORITY_NAMES, batch_of, encode_body

if TYPE_CHECKING:  # pragma: no cover
    from .plane import DataPlane

log = logging.getLogger(__name__)

ONLINE, DEGRADED, OFFLINE = "online", "degraded", "offline"
# Consecutive failed attempts after which a sink counts as offline rather than degraded.
OFFLINE_AFTER = 3
# Deliver calls in flight per sink when the site file does not say (storage.deliveries_in_flight).
DEFAULT_IN_FLIGHT = 2


def backoff(attempt: int, initial: float, cap: float, rng: random.Random) -> float:
    """Exponential backoff with jitter: a random delay in [d/2, d], d = initial * 2^(attempt-1) capped."""
    d = min(cap, initial * (2 ** max(0, attempt - 1)))
    return d * (0.5 + 0.5 * rng.random())


@attrs.frozen(slots=True)
class Chunk:
    """Records of one priority after a cursor, read and decoded in a worker thread."""

    after: int                 # the cursor it was read after
    count: int                 # records read (all sinks')
    removed: int               # records of the priority removed from the WAL when it was read (wal_removed)
    last_id: int
    first_created: float
    batches: list              # this sink's records, decoded
    readings: int


def fetch_chunk(conn: sqlite3.Connection, prio: int, after: int, limit: int, needle: str) -> Chunk:
    """Read up to `limit` records after `after` and decode the ones addressed to `needle` (",sink,")."""
    conn.execute("BEGIN")      # one snapshot: the records and how many were removed before them
    try:
        removed = conn.execute("SELECT coalesce(max(records), 0) FROM wal_removed WHERE prio=?",
                               (prio,)).fetchone()[0]
        rows = conn.execute("SELECT id, device, seq, n, targets, created, body FROM wal_records "
                            "WHERE prio=? AND id>? ORDER BY id LIMIT ?", (prio, after, limit)).fetchall()
    finally:
        conn.execute("COMMIT")
    if not rows:
        return Chunk(after, 0, removed, after, 0.0, [], 0)
    batches = [batch_of(device, seq, body) for _, device, seq, n, targets, _, body in rows if needle in targets]
    return Chunk(after, len(rows), removed, rows[-1][0], rows[0][5], batches, sum(len(b) for b in batches))


def passed_records(conn: sqlite3.Connection, cursors: Sequence[int]) -> list[int]:
    """Per priority, the number (counted from the file's first record of that priority, see
    WriteAheadLog.removed) of the last record at or before the cursor: records removed, plus
    those still stored up to the cursor. Read once when a delivery starts."""
    conn.execute("BEGIN")
    try:
        removed = dict(conn.execute("SELECT prio, records FROM wal_removed").fetchall())
        return [removed.get(p, 0) + conn.execute("SELECT count(*) FROM wal_records WHERE prio=? AND id<=?",
                                                 (p, cursors[p])).fetchone()[0] for p in range(3)]
    finally:
        conn.execute("COMMIT")


@attrs.define(slots=True)
class _Slot:
    """One pipelined deliver call: its chunk, and how it ended."""

    chunk: Chunk
    done: trio.Event = attrs.field(factory=trio.Event)
    ok: bool = False


def load_cursors(conn: sqlite3.Connection, sink: str) -> list[int]:
    cursors = [0, 0, 0]
    for prio, last in conn.execute("SELECT prio, last_id FROM wal_cursors WHERE sink=?", (sink,)):
        cursors[prio] = last
    return cursors


class SinkDelivery:
    def __init__(self, plane: "DataPlane", sink_id: str, sink: Any):
        self.plane = plane
        self.sink_id = sink_id
        self.sink = sink
        self.local = bool(getattr(sink, "local", False))
        self.cursors = [0, 0, 0]
        # Per priority, the number of the last record the cursor passed (see passed_records): the
        # backlog is the records numbered above it and above what retention removed (plane.sink_status).
        self.passed = [0, 0, 0]
        self.state = ONLINE
        self.failures = 0                 # consecutive failed attempts
        self.delivered_readings = 0
        self.delivered_batches = 0
        self.dead_letters = 0
        self.withheld = 0                 # restricted raw readings kept from this (non-local) sink
        self.last_error = ""
        self._fresh = [0, 0, 0]           # readings committed since the last look, per priority
        self._wake = trio.Event()
        self._rng = random.Random()
        self.scope = trio.CancelScope()
        self._needle = f",{sink_id},"
        self._prefetched: dict[int, Chunk] = {}
        self._serial = False              # after a failed pipelined call: one call at a time until one succeeds
        self.in_flight = 0                # deliver calls under way now

    # --- told by the plane -----------------------------------------------------------
    def notify(self, prio_counts: Sequence[int]) -> None:
        fresh = self._fresh
        for i, c in enumerate(prio_counts):
            fresh[i] += c
        if fresh[CRITICAL] or fresh[NORMAL] >= self.plane.batch_readings or fresh[LOW] >= self.plane.batch_readings:
            self._wake.set()

    def describe(self) -> dict[str, Any]:
        return {"sink": self.sink_id, "state": self.state, "failures": self.failures, "local": self.local,
                "cursors": dict(zip(PRIORITY_NAMES, self.cursors)), "delivered_readings": self.delivered_readings,
                "delivered_batches": self.delivered_batches, "dead_letters": self.dead_letters,
                "withheld": self.withheld, "last_error": self.last_error}

    # --- the task ------------------------------------------------------------------------
    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        plane = self.plane
        conn = plane.wal.reader()
        try:
            self.cursors = await trio.to_thread.run_sync(load_cursors, conn, self.sink_id)
            self.passed = await trio.to_thread.run_sync(passed_records, conn, self.cursors)
            task_status.started(self)
            with self.scope:
                while True:
                    # Re-armed before looking, so a commit during the look is never missed.
                    self._wake = trio.Event()
                    self._fresh = [0, 0, 0]
                    next_due = await self._pass(conn)
                    if next_due is None:
                        continue           # delivered something: look again at once, critical first
                    # Bounded wait: records another process wrote (`sitegate dlq replay`) are seen too.
                    with trio.move_on_after(min(self.plane.idle_poll, max(0.0, next_due - time.time()))):
                        await self._wake.wait()
        finally:
            conn.close()

    async def _pass(self, conn: sqlite3.Connection) -> float | None:
        """Deliver the first due class (critical first); None if something was delivered, else when
        the next class falls due (inf: nothing pending)."""
        plane = self.plane
        next_due = math.inf
        now = time.time()
        limit = plane.fetch_records
        for prio in (CRITICAL, NORMAL, LOW):
            chunk = self._prefetched.pop(prio, None)
            if chunk is None or chunk.after != self.cursors[prio]:
                chunk = await trio.to_thread.run_sync(fetch_chunk, conn, prio, self.cursors[prio], limit,
                                                      self._needle)
            if not chunk.count:
                continue
            if prio != CRITICAL and chunk.count < limit:
                due = chunk.first_created + plane.periods[prio]
                if chunk.readings < plane.batch_readings and due > now and not plane.draining:
                    next_due = min(next_due, due)
                    continue
            window = self.window()
            if chunk.count == limit and window > 1 and not self._serial:
                await self._pipeline(conn, prio, chunk, window)
                return None
            if chunk.batches:
                if chunk.count == limit:
                    # A backlog: read the next chunk while this one is delivered.
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(self._prefetch, conn, prio, chunk.last_id, limit)
                        await self._deliver(prio, chunk.batches)
                else:
                    await self._deliver(prio, chunk.batches)
            self._advance(prio, chunk)
            return None
        return next_due

    def window(self) -> int:
        """Deliver calls this sink may have in flight: the site's limit, and what the sink allows."""
        try:
            allowed = int(getattr(self.sink, "concurrent_deliveries", 1) or 1)
        except (TypeError, ValueError):
            allowed = 1
        return max(1, min(allowed, self.plane_window()))

    def plane_window(self) -> int:
        loaded = getattr(getattr(self.plane, "host", None), "loaded", None)
        storage = getattr(getattr(loaded, "site", None), "storage", None)
        return int(getattr(storage, "deliveries_in_flight", DEFAULT_IN_FLIGHT))

    async def _pipeline(self, conn: sqlite3.Connection, prio: int, first: Chunk, window: int) -> None:
        """Deliver a backlog of full chunks with up to `window` calls in flight (see the module doc)."""
        limit = self.plane.fetch_records
        slots: collections.deque[_Slot] = collections.deque()
        failed = False
        nxt: Chunk | None = first
        async with trio.open_nursery() as nursery:
            while True:
                # Fill the window, in commit order: each call has begun before the next is started.
                while (nxt is not None and not failed and len(slots) < window
                       and (prio == CRITICAL or not self._fresh[CRITICAL])):
                    chunk, nxt = nxt, None
                    slot = _Slot(chunk)
                    slots.append(slot)
                    batches = self._filtered(chunk.batches)
                    if batches:
                        await nursery.start(self._pipelined_call, slot, batches)
                    else:
                        slot.ok = True
                        slot.done.set()
                    if chunk.count == limit:
                        nxt = await trio.to_thread.run_sync(fetch_chunk, conn, prio, chunk.last_id, limit,
                                                            self._needle)
                        if nxt.count < limit:
                            # Not a backlog any more: the next pass decides (periods, batching) with it.
                            self._prefetched[prio] = nxt
                            nxt = None
                if not slots:
                    break
                slot = slots[0]
                await slot.done.wait()
                slots.popleft()
                if slot.ok and not failed:
                    self._advance(prio, slot.chunk)
                else:
                    failed = True
        if failed:
            self._prefetched.pop(prio, None)
            self._serial = True

    async def _pipelined_call(self, slot: _Slot, batches: list[Batch],
                              task_status=trio.TASK_STATUS_IGNORED) -> None:
        self.in_flight += 1
        try:
            error = await self._attempt(batches, task_status.started)
        finally:
            self.in_flight -= 1
        slot.ok = error is None
        slot.done.set()

    async def _prefetch(self, conn: sqlite3.Connection, prio: int, after: int, limit: int) -> None:
        self._prefetched[prio] = await trio.to_thread.run_sync(fetch_chunk, conn, prio, after, limit, self._needle)

    def _advance(self, prio: int, chunk: Chunk) -> None:
        last_id = chunk.last_id
        self.cursors[prio] = last_id
        # Records retention removed before the chunk was read were skipped, not passed one by one.
        self.passed[prio] = max(self.passed[prio], chunk.removed) + chunk.count
        sink = self.sink_id
        self.plane.wal.call_nowait(lambda c: c.execute(
            "INSERT INTO wal_cursors(sink, prio, last_id, updated) VALUES(?, ?, ?, ?) "
            "ON CONFLICT(sink, prio) DO UPDATE SET last_id=excluded.last_id, updated=excluded.updated",
            (sink, prio, last_id, time.time())))

    # --- delivering -------------------------------------------------------------------
    def _filtered(self, batches: list[Batch]) -> list[Batch]:
        guard = self.plane.privacy
        if not self.local and guard.active():
            before = guard.withheld
            batches = [part for b in batches for part in guard.filter(b)]
            self.withheld += guard.withheld - before
        return batches

    async def _deliver(self, prio: int, batches: list[Batch]) -> None:
        batches = self._filtered(batches)
        if not batches:
            return
        self.in_flight += 1
        try:
            await self._deliver_isolating(prio, batches)
        finally:
            self.in_flight -= 1
        self._serial = False

    async def _deliver_isolating(self, prio: int, batches: list[Batch]) -> None:
        """Deliver; on a permanent rejection, halve until the poison reading is alone, then dead-letter it."""
        error = await self._send(batches)
        if error is None:
            return
        if len(batches) > 1:
            half = len(batches) // 2
            await self._deliver_isolating(prio, batches[:half])
            await self._deliver_isolating(prio, batches[half:])
            return
        b = batches[0]
        if len(b) > 1:
            half = len(b) // 2
            await self._deliver_isolating(prio, [_part(b, 0, half)])
            await self._deliver_isolating(prio, [_part(b, half, len(b))])
            return
        self._dead_letter(prio, b, error)

    async def _send(self, batches: list[Batch]) -> SinkError | None:
        """Deliver, retrying transient failures with backoff; the permanent error, or None once delivered."""
        while True:
            error = await self._attempt(batches)
            if error is None or (isinstance(error, SinkError) and error.permanent):
                return error
            await trio.sleep(backoff(self.failures, self.plane.retry_initial, self.plane.retry_max, self._rng))

    async def _attempt(self, batches: list[Batch], began: Any = None) -> BaseException | None:
        """One deliver call: None once delivered, else the error (counted in the sink's state).

        `began` is called right before the call, with no checkpoint until the sink's own first
        one: the pipeline starts the next call only after this one began (the order of sending).
        """
        try:
            # A destination that never answers is a failure to retry, not a hang of this sink.
            with trio.fail_after(self.plane.deliver_timeout):
                if began is not None:
                    began()
                await self.sink.deliver(batches)
        except trio.TooSlowError:
            error: BaseException = SinkError(f"deliver did not return within {self.plane.deliver_timeout:g} s")
        except SinkError as exc:
            if exc.permanent:
                self._succeeded()      # the sink answered: it is reachable
                return exc
            error = exc
        except Exception as exc:  # noqa: BLE001 - a sink bug is retried, logged, and shown in its state
            error = exc
            log.warning("sink %s raised %s: %s (treated as transient)", self.sink_id, type(exc).__name__, exc)
        else:
            self._succeeded()
            self.delivered_batches += len(batches)
            self.delivered_readings += sum(len(b) for b in batches)
            return None
        self.failures += 1
        self.last_error = f"{type(error).__name__}: {error}"
        self._set_state(OFFLINE if self.failures >= OFFLINE_AFTER else DEGRADED, self.last_error)
        return error

    def _succeeded(self) -> None:
        if self.failures or self.state != ONLINE:
            self.failures = 0
            self._set_state(ONLINE, "delivered")

    def _set_state(self, state: str, reason: str) -> None:
        if state == self.state:
            return
        old, self.state = self.state, state
        level = logging.INFO if state == ONLINE else logging.WARNING
        log.log(level, "sink %s: %s -> %s (%s)", self.sink_id, old, state, reason)
        self.plane.emit(Event("sink.state", self.sink_id,
                              severity=Severity.INFO if state == ONLINE else Severity.WARNING,
                              message=f"{old} -> {state}: {reason}",
                              data={"sink": self.sink_id, "from": old, "state": state, "reason": reason,
                                    "failures": self.failures}))

    def _dead_letter(self, prio: int, b: Batch, error: SinkError) -> None:
        self.dead_letters += len(b)
        body = encode_body(b.points, b.values, b.timestamps, b.quality, b.source)
        row = (self.sink_id, prio, b.device, b.seq, len(b), str(error), time.time(), body)
        counts = self.plane.dead_letters

        def store(c: sqlite3.Connection) -> None:
            c.execute("INSERT INTO dead_letters(sink, prio, device, seq, n, error, failed_at, body) "
                      "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", row)
            counts["sink"] += 1
        self.plane.wal.call_nowait(store)
        self.plane.sink_dead_lettered(1)
        log.warning("sink %s rejected %s seq %d permanently (%s): moved to the dead-letter table",
                    self.sink_id, b.device, b.seq, error)
        self.plane.emit(Event("sink.dead_letter", self.sink_id, b.device, b.points[0], Severity.WARNING,
                              f"rejected permanently: {error}",
                              {"sink": self.sink_id, "device": b.device, "seq": b.seq, "readings": len(b),
                               "error": str(error)}))


def _part(b: Batch, start: int, end: int) -> Batch:
    q = b.quality
    return Batch(b.device, b.points[start:end], b.values[start:end], b.timestamps[start:end],
                 None if q is None else q[start:end], b.source, b.seq + start)
