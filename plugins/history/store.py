"""Local time series in SQLite: raw readings, hourly and daily roll-ups, each with its own retention.

`HistoryStore.write` takes delivered batches, deduplicated by msgId (device
and seq), and folds only the readings it had not seen into the hourly and
daily roll-ups, so a replayed reading never counts twice and the cost is per new reading.
`query(device, point, start, end, resolution)` is what the WebSocket API calls.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Sequence

from sitegate.model import Batch

HOUR = 3600.0
DAY = 86400.0
RESOLUTIONS = ("auto", "raw", "hour", "day")

SCHEMA = """
CREATE TABLE IF NOT EXISTS raw(
    device TEXT NOT NULL, seq INTEGER NOT NULL, point TEXT NOT NULL, ts REAL NOT NULL, value, quality INTEGER NOT NULL,
    PRIMARY KEY(device, seq)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS raw_point_ts ON raw(device, point, ts);
CREATE TABLE IF NOT EXISTS hourly(
    device TEXT NOT NULL, point TEXT NOT NULL, bucket REAL NOT NULL, count INTEGER NOT NULL, sum REAL,
    min REAL, max REAL, first REAL, first_ts REAL, last REAL, last_ts REAL,
    PRIMARY KEY(device, point, bucket)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS daily(
    device TEXT NOT NULL, point TEXT NOT NULL, bucket REAL NOT NULL, count INTEGER NOT NULL, sum REAL,
    min REAL, max REAL, first REAL, first_ts REAL, last REAL, last_ts REAL,
    PRIMARY KEY(device, point, bucket)) WITHOUT ROWID;
CREATE TEMP TABLE IF NOT EXISTS incoming(
    device TEXT NOT NULL, seq INTEGER NOT NULL, point TEXT NOT NULL, ts REAL NOT NULL, value, quality INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS temp.incoming_point_ts ON incoming(device, point, ts);
"""

# Roll-ups are updated from the readings just stored (never from re-sent ones), O(new readings):
# the new readings are aggregated per bucket in Python and merged into the table in one upsert.
_MERGE = """
INSERT INTO {table}(device, point, bucket, count, sum, min, max, first, first_ts, last, last_ts)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT(device, point, bucket) DO UPDATE SET
    count = count + excluded.count, sum = sum + excluded.sum,
    min = min(min, excluded.min), max = max(max, excluded.max),
    first = CASE WHEN excluded.first_ts < first_ts THEN excluded.first ELSE first END,
    first_ts = min(first_ts, excluded.first_ts),
    last = CASE WHEN excluded.last_ts >= last_ts THEN excluded.last ELSE last END,
    last_ts = max(last_ts, excluded.last_ts)
"""


def aggregate(rows, width: float) -> list[tuple]:
    """(device, point, bucket, count, sum, min, max, first, first_ts, last, last_ts) per bucket of
    numeric readings in `rows` of (device, point, ts, value)."""
    groups: dict[tuple, list] = {}
    for device, point, ts, v in rows:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        key = (device, point, ts - ts % width)
        g = groups.get(key)
        if g is None:
            groups[key] = [1, v, v, v, v, ts, v, ts]
            continue
        g[0] += 1
        g[1] += v
        if v < g[2]:
            g[2] = v
        if v > g[3]:
            g[3] = v
        if ts < g[5]:
            g[4], g[5] = v, ts
        if ts >= g[7]:
            g[6], g[7] = v, ts
    return [(*key, *g) for key, g in groups.items()]


class HistoryStore:
    def __init__(self, path: Path | str, *, raw_keep: float = 7 * DAY, hourly_keep: float = 90 * DAY,
                 daily_keep: float = 5 * 365 * DAY, synchronous: str = "NORMAL"):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.raw_keep, self.hourly_keep, self.daily_keep = raw_keep, hourly_keep, daily_keep
        self._conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False, timeout=30)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute(f"PRAGMA synchronous={synchronous}")
        self._conn.executescript(SCHEMA)
        self._lock = threading.Lock()           # one writer: deliveries, roll-ups and retention take turns
        self._local = threading.local()         # one reading connection per querying thread
        self.written = 0
        self.too_old = 0                        # readings older than raw retention: not stored, counted
        self._last_prune = 0.0
        self.duplicates = 0

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # --- writing (called from a worker thread) ----------------------------------------------
    def write(self, batches: Sequence[Batch], now: float | None = None) -> int:
        """Store readings and fold them into the hourly and daily roll-ups. A reading stored before
        (same device and seq, i.e. same msgId) is ignored, so a replay never counts twice.
        Returns how many readings were new."""
        now = time.time() if now is None else now
        oldest = now - self.raw_keep
        rows = []
        for b in batches:
            device, seq = b.device, b.seq
            q = b.quality
            for i, (p, v, t) in enumerate(zip(b.points, b.values, b.timestamps)):
                if t < oldest:
                    self.too_old += 1
                    continue
                if not isinstance(v, (int, float, str, bytes)) and v is not None:
                    v = str(v)
                rows.append((device, seq + i, p, t, v, 0 if q is None else q[i]))
        with self._lock:
            c = self._conn
            c.execute("BEGIN IMMEDIATE")
            c.execute("DELETE FROM incoming")
            c.executemany("INSERT INTO incoming VALUES (?, ?, ?, ?, ?, ?)", rows)
            c.execute("DELETE FROM incoming WHERE rowid NOT IN (SELECT min(rowid) FROM incoming GROUP BY device, seq)")
            c.execute("DELETE FROM incoming WHERE EXISTS "
                      "(SELECT 1 FROM raw WHERE raw.device=incoming.device AND raw.seq=incoming.seq)")
            new = c.execute("INSERT INTO raw SELECT device, seq, point, ts, value, quality FROM incoming").rowcount
            if new:
                fresh = c.execute("SELECT device, point, ts, value FROM incoming").fetchall()
                c.executemany(_MERGE.format(table="hourly"), aggregate(fresh, HOUR))
                c.executemany(_MERGE.format(table="daily"), aggregate(fresh, DAY))
            c.execute("COMMIT")
            self.written += new
            self.duplicates += len(rows) - new   # readings it already had: a replay after a lost ack
        return new

    def prune(self, now: float | None = None) -> dict[str, int]:
        """Apply the retention tiers: raw, hourly and daily rows older than their keep."""
        now = time.time() if now is None else now
        with self._lock:
            c = self._conn
            c.execute("BEGIN IMMEDIATE")
            out = {
                "raw": c.execute("DELETE FROM raw WHERE ts<?", (now - self.raw_keep,)).rowcount,
                "hourly": c.execute("DELETE FROM hourly WHERE bucket<?", (now - self.hourly_keep,)).rowcount,
                "daily": c.execute("DELETE FROM daily WHERE bucket<?", (now - self.daily_keep,)).rowcount,
            }
            c.execute("COMMIT")
            self._last_prune = now
        return out

    def maintain(self, now: float | None = None, *, prune_every: float = 60.0) -> None:
        """Prune when it is due; cheap when it is not."""
        now = time.time() if now is None else now
        if now - self._last_prune >= prune_every:
            self.prune(now)

    # --- reading -------------------------------------------------------------------------
    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = sqlite3.connect(str(self.path), isolation_level=None, timeout=30)
        return conn

    def query(self, device: str, point: str, start: float, end: float, resolution: str = "auto",
              limit: int = 10_000) -> dict[str, Any]:
        """Readings of one point in [start, end): raw rows, or hourly/daily aggregates.

        Returns {"resolution": "raw"|"hour"|"day", "rows": [...]}; raw rows are
        {ts, value, quality}, aggregate rows {ts (bucket start), count, min, max, avg, first, last}.
        `auto` picks raw for spans up to 6 h (within raw retention), hours up to 31 days, else days.
        """
        if resolution not in RESOLUTIONS:
            raise ValueError(f"resolution: expected one of {', '.join(RESOLUTIONS)}, got {resolution!r}")
        if not end > start:
            raise ValueError(f"end ({end}) must be after start ({start})")
        if resolution == "auto":
            span = end - start
            if span <= 6 * HOUR and start >= time.time() - self.raw_keep:
                resolution = "raw"
            elif span <= 31 * DAY:
                resolution = "hour"
            else:
                resolution = "day"
        conn = self._reader()
        if resolution == "raw":
            rows = [{"ts": t, "value": v, "quality": q} for t, v, q in conn.execute(
                "SELECT ts, value, quality FROM raw WHERE device=? AND point=? AND ts>=? AND ts<? ORDER BY ts LIMIT ?",
                (device, point, start, end, limit))]
            return {"resolution": "raw", "rows": rows}
        table = "hourly" if resolution == "hour" else "daily"
        width = HOUR if resolution == "hour" else DAY
        rows = [{"ts": b, "count": n, "min": lo, "max": hi, "avg": s / n if n else None, "first": f, "last": la}
                for b, n, s, lo, hi, f, la in conn.execute(
                    f"SELECT bucket, count, sum, min, max, first, last FROM {table} "
                    "WHERE device=? AND point=? AND bucket>=? AND bucket<? ORDER BY bucket LIMIT ?",
                    (device, point, start - start % width, end, limit))]
        return {"resolution": resolution, "rows": rows}

    def points(self) -> list[tuple[str, str]]:
        """Every (device, point) with hourly history."""
        return self._reader().execute("SELECT DISTINCT device, point FROM hourly ORDER BY device, point").fetchall()
