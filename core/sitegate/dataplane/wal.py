"""The write-ahead log: one SQLite file per site, written by one thread with group commit.

The stage (stage.py) hands records here and waits for the commit; delivery
(delivery.py) reads them back per sink and moves cursors; retention and the
disk budget (retention.py) delete through the same writer, so every change to
the file is serialised in one thread and committed in groups.
"""

from __future__ import annotations

import json
import logging
import marshal
import queue
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import trio

from ..model import Batch

log = logging.getLogger(__name__)

CRITICAL, NORMAL, LOW = 0, 1, 2
PRIORITY_NAMES = ("critical", "normal", "low")
PRIORITY_OF = {name: i for i, name in enumerate(PRIORITY_NAMES)}

# Rough per-row cost beside the body (key, columns, index entry): used by the disk budget.
ROW_OVERHEAD = 64

SCHEMA = """
CREATE TABLE IF NOT EXISTS wal_records(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    prio INTEGER NOT NULL,
    device TEXT NOT NULL,
    seq INTEGER NOT NULL,
    n INTEGER NOT NULL,
    targets TEXT NOT NULL,
    created REAL NOT NULL,
    size INTEGER NOT NULL,
    body BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS wal_records_prio ON wal_records(prio, id);
CREATE TABLE IF NOT EXISTS wal_cursors(
    sink TEXT NOT NULL, prio INTEGER NOT NULL, last_id INTEGER NOT NULL, updated REAL NOT NULL,
    PRIMARY KEY(sink, prio));
CREATE TABLE IF NOT EXISTS wal_sequences(device TEXT PRIMARY KEY, next_seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS wal_drops(
    prio INTEGER NOT NULL, reason TEXT NOT NULL, records INTEGER NOT NULL, readings INTEGER NOT NULL,
    PRIMARY KEY(prio, reason));
CREATE TABLE IF NOT EXISTS wal_removed(prio INTEGER PRIMARY KEY, records INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS dead_letters(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sink TEXT NOT NULL,
    prio INTEGER NOT NULL,
    device TEXT NOT NULL,
    seq INTEGER NOT NULL,
    n INTEGER NOT NULL,
    error TEXT NOT NULL,
    failed_at REAL NOT NULL,
    body BLOB NOT NULL,
    kind TEXT NOT NULL DEFAULT 'sink',
    source TEXT NOT NULL DEFAULT '',
    context TEXT NOT NULL DEFAULT '',
    attempts INTEGER NOT NULL DEFAULT 0,
    replay REAL NOT NULL DEFAULT 0,
    note TEXT NOT NULL DEFAULT '');
"""

# Dead letters are of two kinds. `sink`: readings a sink rejected permanently (delivery.py);
# `sink` is that sink, `body` the readings (encode_body), replayable. `ingress`: a message an
# adapter received and could not decode (EntryContext.dead_letter); `sink` is the adapter's
# entry, `source` where it came from (an MQTT topic), `device` the device if known, `body`
# the raw payload, `n` 0, `context` what else the adapter needs to decode it again (mqttsn: the
# client id). `sitegate dlq replay` sets `replay` (the time it asked; 0: not asked) and the running
# site hands the payload to its entry to decode again (DataPlane.replay_ingress): decoded, the row
# is deleted once the readings are committed; failing again, `error` is the new error and
# `attempts` counts; not tried (the entry is not running, or cannot decode again), `note` says why.
# Files made before a column existed are migrated when opened.
DEAD_LETTER_COLUMNS = {"kind": "TEXT NOT NULL DEFAULT 'sink'", "source": "TEXT NOT NULL DEFAULT ''",
                       "context": "TEXT NOT NULL DEFAULT ''", "attempts": "INTEGER NOT NULL DEFAULT 0",
                       "replay": "REAL NOT NULL DEFAULT 0", "note": "TEXT NOT NULL DEFAULT ''"}


def migrate(conn: sqlite3.Connection) -> None:
    """Bring an older file's tables up to SCHEMA (columns added since); idempotent."""
    have = {row[1] for row in conn.execute("PRAGMA table_info(dead_letters)")}
    for name, decl in DEAD_LETTER_COLUMNS.items():
        if name not in have:
            conn.execute(f"ALTER TABLE dead_letters ADD COLUMN {name} {decl}")
    conn.execute("CREATE INDEX IF NOT EXISTS dead_letters_kind ON dead_letters(kind, id)")
    conn.execute("CREATE INDEX IF NOT EXISTS dead_letters_replay ON dead_letters(replay) WHERE replay > 0")


def store_ingress_dead_letters(conn: sqlite3.Connection, rows: list[tuple], totals: list[int], *,
                               max_rows: int, max_bytes: int) -> int:
    """Insert ingress dead letters (entry, device, error, failed_at, payload, source, context), then delete the
    oldest ingress ones beyond `max_rows` rows or `max_bytes` of payloads; returns how many went.

    `totals` is [rows, bytes] of the ingress dead letters, kept by the caller between calls
    (start with [-1, 0]); it is counted again before anything is deleted (`dlq purge` may
    have removed some meanwhile)."""
    conn.executemany("INSERT INTO dead_letters(kind, sink, prio, device, seq, n, error, failed_at, body, source, "
                     "context) VALUES ('ingress', ?, 1, ?, 0, 0, ?, ?, ?, ?, ?)", rows)

    def recount() -> None:
        totals[:] = conn.execute("SELECT count(*), coalesce(sum(length(body)), 0) FROM dead_letters "
                                 "WHERE kind='ingress'").fetchone()

    if totals[0] < 0:
        recount()
    else:
        totals[0] += len(rows)
        totals[1] += sum(len(r[4]) for r in rows)
    if totals[0] <= max_rows and totals[1] <= max_bytes:
        return 0
    recount()
    cut, removed = None, 0
    count, size = totals
    if count > max_rows or size > max_bytes:
        for rid, length in conn.execute("SELECT id, length(body) FROM dead_letters WHERE kind='ingress' "
                                        "ORDER BY id"):
            if count <= max_rows and size <= max_bytes:
                break
            cut, count, size, removed = rid, count - 1, size - length, removed + 1
    if cut is not None:
        conn.execute("DELETE FROM dead_letters WHERE kind='ingress' AND id<=?", (cut,))
        totals[:] = [count, size]
    return removed


def requested_ingress_replays(conn: sqlite3.Connection, limit: int) -> list[tuple]:
    """Ingress dead letters `sitegate dlq replay` asked for, oldest first: (id, entry, payload, source,
    failed_at, device, context, attempts)."""
    return conn.execute("SELECT id, sink, body, source, failed_at, device, context, attempts FROM dead_letters "
                        "WHERE replay > 0 AND kind='ingress' ORDER BY id LIMIT ?", (limit,)).fetchall()


def settle_ingress_replays(conn: sqlite3.Connection, decoded: Sequence[int], failed: Sequence[tuple[int, str]],
                           untried: Sequence[tuple[int, str]], totals: list[int] | None = None) -> int:
    """Record what replaying ingress dead letters gave: `decoded` ids are deleted (call once their
    readings are committed), `failed` (id, error) keep the new error with one more attempt,
    `untried` (id, why) keep everything but `note`; the request is done for all of them.
    Returns how many were deleted (`dlq purge` may have taken some meanwhile)."""
    deleted = 0
    if decoded:
        deleted = conn.executemany("DELETE FROM dead_letters WHERE id=? AND kind='ingress'",
                                   [(i,) for i in decoded]).rowcount
        if totals is not None:
            totals[:] = [-1, 0]           # counted again at the next store
    conn.executemany("UPDATE dead_letters SET error=?, attempts=attempts+1, replay=0, note='' WHERE id=?",
                     [(error, i) for i, error in failed])
    conn.executemany("UPDATE dead_letters SET replay=0, note=? WHERE id=?", [(why, i) for i, why in untried])
    return deleted


# --- record bodies: the batch's columns, packed once at append --------------------------

def encode_body(points: Sequence[str], values: Sequence[Any], timestamps: Sequence[float],
                quality: Sequence[int] | None, source: str) -> bytes:
    """Columns as bytes. marshal is several times faster than JSON for lists of numbers and
    strings; values marshal cannot carry (rare: adapter-specific objects) fall back to JSON."""
    cols = (points, values, timestamps, quality, source)
    try:
        return b"M" + marshal.dumps(cols)
    except ValueError:
        return b"J" + json.dumps([list(points), list(values), list(timestamps),
                                  None if quality is None else list(quality), source], default=str).encode()


def decode_body(body: bytes) -> tuple[list, list, list, list | None, str]:
    tag = body[:1]
    if tag == b"M":
        return marshal.loads(memoryview(body)[1:])
    if tag == b"J":
        return tuple(json.loads(body[1:]))  # type: ignore[return-value]
    raise ValueError(f"WAL record body has unknown encoding {tag!r}")


_new_batch = object.__new__
_set = object.__setattr__


def batch_of(device: str, seq: int, body: bytes) -> Batch:
    """The Batch stored in a record. Built without Batch's checks: the columns were checked when the
    batch was first made and are read back as written (this halves the cost of draining a backlog)."""
    points, values, stamps, quality, source = decode_body(body)
    b = _new_batch(Batch)
    _set(b, "device", device)
    _set(b, "points", points)
    _set(b, "values", values)
    _set(b, "timestamps", stamps)
    _set(b, "quality", quality)
    _set(b, "source", source)
    _set(b, "seq", seq)
    return b


def targets_text(sinks: Iterable[str]) -> str:
    # ",a,b," so membership is a substring test on the stored text, with no parsing per row.
    return "," + ",".join(sorted(sinks)) + ","


def connect(path: Path | str, synchronous: str = "NORMAL", *, timeout: float = 30.0) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), timeout=timeout, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.executescript(SCHEMA)
    migrate(conn)
    return conn


class WalClosed(Exception):
    """The WAL was closed before the operation committed."""


class _Op:
    __slots__ = ("rows", "fn", "done", "result", "error", "readings")

    def __init__(self, rows=None, fn=None, done=None):
        self.rows = rows              # append: list of row tuples (without id)
        self.readings = sum(r[3] for r in rows) if rows else 0
        self.fn = fn                  # call: fn(conn) -> result, inside the group's transaction
        self.done = done              # trio-side callback(op), or None for fire-and-forget
        self.result: Any = None
        self.error: BaseException | None = None


_STOP = object()


class WriteAheadLog:
    """The site's SQLite file and its writer thread.

    `append` returns once the rows are committed (group commit: every op queued
    while the previous commit ran is written in the next transaction).
    `synchronous` is NORMAL (survives a process crash) or FULL (also power loss).
    """

    def __init__(self, path: Path | str, *, synchronous: str = "NORMAL", max_group: int = 20000):
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous: expected NORMAL or FULL, got {synchronous!r}")
        self.path = Path(path)
        self.synchronous = synchronous
        self.max_group = max_group
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self.pending_readings = 0           # queued but not committed (backpressure)
        self.committed_groups = 0
        self.committed_records = 0
        self.committed_readings = 0
        self.failed_groups = 0              # groups rolled back (what their calls counted did not happen)
        # Called on the trio thread after each commit with readings committed per priority.
        self.on_commit: list[Callable[[list[int]], None]] = []
        # Hooks the writer thread runs after each group's appends, inside the transaction
        # (the disk budget), given the connection; may return a value for on_after.
        self.after_append: Callable[[sqlite3.Connection], Any] | None = None
        self.on_after: Callable[[Any], None] | None = None
        self.closed = False
        self.next_seq: dict[str, int] = {}
        # Records, readings and bytes stored per priority; kept by the writer thread only.
        self.live: list[list[int]] = [[0, 0, 0], [0, 0, 0], [0, 0, 0]]
        self.last_ids = [0, 0, 0]           # newest committed record id per priority
        # Records of each priority ever removed (acknowledged, expired, over the budget), kept in
        # wal_removed in the same transaction as the deletes. Retention removes the oldest ones of a
        # priority first, so record k of a priority (counted from the file's first) is gone exactly
        # when k <= removed; removed + live records is the newest one's number. Sinks' backlogs
        # are counted with these numbers (delivery.py), whatever retention took meanwhile.
        self.removed = [0, 0, 0]

    # --- lifecycle ---------------------------------------------------------------
    def open(self) -> None:
        """Create the schema and read the sequence numbers (blocking; call before start)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = connect(self.path, self.synchronous)
        # Sequence numbers in use: those of stored records, and those of records already removed
        # (retention saves them in wal_sequences as it deletes, so commits need not write them).
        self.next_seq = dict(self._conn.execute("SELECT device, next_seq FROM wal_sequences"))
        for device, end in self._conn.execute("SELECT device, max(seq + n) FROM wal_records GROUP BY device"):
            if end > self.next_seq.get(device, 0):
                self.next_seq[device] = end
        for prio, count, readings, size in self._conn.execute(
                "SELECT prio, count(*), sum(n), sum(size) FROM wal_records GROUP BY prio"):
            self.live[prio] = [count, readings or 0, (size or 0) + count * ROW_OVERHEAD]
        for prio, last in self._conn.execute("SELECT prio, max(id) FROM wal_records GROUP BY prio"):
            self.last_ids[prio] = last
        for prio, records in self._conn.execute("SELECT prio, records FROM wal_removed"):
            self.removed[prio] = records

    def count_removed(self, conn: sqlite3.Connection, prio: int, records: int) -> None:
        """In the writer thread, with the delete: `records` of `prio`, its oldest, left the WAL."""
        conn.execute("INSERT INTO wal_removed(prio, records) VALUES (?, ?) ON CONFLICT(prio) "
                     "DO UPDATE SET records=records+excluded.records", (prio, records))
        self.removed[prio] += records

    def adopt_outside_records(self, conn: sqlite3.Connection) -> list[int]:
        """In the writer thread: count records another process appended (`sitegate dlq replay` of sink
        dead letters while the site runs) as if appended here; readings per priority. Cheap: only
        ids above the newest this writer knows are read (the primary key's range)."""
        prio_counts = [0, 0, 0]
        for prio, count, readings, size, last in conn.execute(
                "SELECT prio, count(*), coalesce(sum(n), 0), coalesce(sum(size), 0), max(id) FROM wal_records "
                "WHERE id>? GROUP BY prio", (max(self.last_ids),)).fetchall():
            stat = self.live[prio]
            stat[0] += count
            stat[1] += readings
            stat[2] += size + count * ROW_OVERHEAD
            self.last_ids[prio] = last
            prio_counts[prio] += readings
        return prio_counts

    def start(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._thread = threading.Thread(target=self._run, name=f"wal-writer:{self.path.name}", daemon=True)
        self._thread.start()

    async def aclose(self) -> None:
        """Commit what is queued, then stop the writer thread."""
        if self.closed:
            return
        self.closed = True
        self._queue.put(_STOP)
        if self._thread is not None:
            await trio.to_thread.run_sync(self._thread.join)
        self._conn.close()

    def reader(self) -> sqlite3.Connection:
        """A connection for reading (delivery, queries); one per task that reads."""
        conn = sqlite3.connect(str(self.path), timeout=30.0, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA query_only=1")
        return conn

    # --- writing -----------------------------------------------------------------
    async def append(self, rows: list[tuple]) -> None:
        """Append rows (prio, device, seq, n, targets, created, size, body); return once committed."""
        event = trio.Event()
        op = _Op(rows=rows, done=lambda _op: event.set())
        self._put(op)
        await event.wait()
        if op.error is not None:
            raise op.error

    def append_nowait(self, rows: list[tuple], done: Callable[[_Op], None] | None = None) -> None:
        self._put(_Op(rows=rows, done=done))

    async def call(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run ``fn(conn)`` in the writer thread inside the next group's transaction; its result."""
        event = trio.Event()
        op = _Op(fn=fn, done=lambda _op: event.set())
        self._put(op)
        await event.wait()
        if op.error is not None:
            raise op.error
        return op.result

    def call_nowait(self, fn: Callable[[sqlite3.Connection], Any], done: Callable[[_Op], None] | None = None) -> None:
        self._put(_Op(fn=fn, done=done))

    def _put(self, op: _Op) -> None:
        if self.closed:
            raise WalClosed(f"{self.path}: the WAL is closed")
        self.pending_readings += op.readings
        self._queue.put(op)

    # --- the writer thread ---------------------------------------------------------
    def _run(self) -> None:
        conn = self._conn
        q = self._queue
        stop = False
        while not stop:
            first = q.get()
            if first is _STOP:
                break
            ops = [first]
            readings = 0
            while len(ops) < self.max_group:
                try:
                    op = q.get_nowait()
                except queue.Empty:
                    break
                if op is _STOP:
                    stop = True
                    break
                ops.append(op)
            try:
                prio_counts, readings = self._write_group(conn, ops)
            except BaseException as exc:  # noqa: BLE001 - report to every waiter, keep the thread alive
                log.exception("WAL commit failed")
                self.failed_groups += 1
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                for op in ops:
                    op.error = exc
                prio_counts, readings = [0, 0, 0], 0
                after = None
            else:
                after = self._after
            self._report(ops, prio_counts, readings, after)

    def _write_group(self, conn: sqlite3.Connection, ops: list[_Op]) -> tuple[list[int], int]:
        conn.execute("BEGIN IMMEDIATE")
        prio_counts = [0, 0, 0]
        rows: list[tuple] = []
        live = self.live
        for op in ops:
            if op.rows is not None:
                for r in op.rows:
                    prio_counts[r[0]] += r[3]
                    stat = live[r[0]]
                    stat[0] += 1
                    stat[1] += r[3]
                    stat[2] += r[6] + ROW_OVERHEAD
                rows.extend(op.rows)
            else:
                if rows:    # keep the order of appends and calls
                    self._insert(conn, rows)
                    rows = []
                try:
                    op.result = op.fn(conn)
                except Exception as exc:  # noqa: BLE001 - the caller gets it; the group still commits
                    op.error = exc
        if rows:
            self._insert(conn, rows)
        self._after = self.after_append(conn) if (self.after_append is not None and any(prio_counts)) else None
        conn.execute("COMMIT")
        return prio_counts, sum(prio_counts)

    def _insert(self, conn: sqlite3.Connection, rows: list[tuple]) -> None:
        conn.executemany("INSERT INTO wal_records(prio, device, seq, n, targets, created, size, body) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        # One writer holds the lock, so the rows got consecutive ids ending at the last one.
        last = conn.execute("SELECT last_insert_rowid()").fetchone()[0]
        first = last - len(rows) + 1
        ids = self.last_ids
        for j, r in enumerate(rows):
            ids[r[0]] = first + j

    def count_inserted(self, records: Sequence[tuple[int, int, int]], first_id: int) -> list[int]:
        """In the writer thread, inside a call: records (prio, readings, size) the call inserted itself
        (`dlq` replay), with consecutive ids from `first_id`, are counted as appended ones are.
        Returns readings per priority (for DataPlane._committed)."""
        prio_counts = [0, 0, 0]
        for j, (prio, n, size) in enumerate(records):
            stat = self.live[prio]
            stat[0] += 1
            stat[1] += n
            stat[2] += size + ROW_OVERHEAD
            prio_counts[prio] += n
            self.last_ids[prio] = max(self.last_ids[prio], first_id + j)
        return prio_counts

    def _report(self, ops: list[_Op], prio_counts: list[int], readings: int, after: Any) -> None:
        def on_trio() -> None:
            self.pending_readings -= sum(op.readings for op in ops)
            self.committed_groups += 1
            self.committed_readings += readings
            self.committed_records += sum(len(op.rows) for op in ops if op.rows)
            for op in ops:
                if op.done is not None:
                    op.done(op)
            if after is not None and self.on_after is not None:
                self.on_after(after)
            if readings:
                for fn in self.on_commit:
                    fn(prio_counts)
        try:
            assert self._token is not None
            self._token.run_sync_soon(on_trio)
        except trio.RunFinishedError:
            pass

    _after: Any = None


def make_rows(prio: int, targets: str, device: str, seq: int, points, values, stamps, quality, source: str,
              created: float) -> tuple:
    body = encode_body(points, values, stamps, quality, source)
    return (prio, device, seq, len(points), targets, created, len(body), body)


def now() -> float:
    return time.time()
