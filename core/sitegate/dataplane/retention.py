"""What leaves the WAL: readings every sink has acknowledged, readings past their class TTL,
and, when the disk budget is exceeded, the oldest low then normal readings (never critical).

Everything here runs in the WAL's writer thread (wal.py), inside a group's
transaction, so deletes never race appends. Drops are counted per priority and
reason in `wal_drops` and reported as `storage.drop` events: never silent.
"""

from __future__ import annotations

import sqlite3
from typing import Iterable

from .wal import CRITICAL, LOW, NORMAL, PRIORITY_NAMES, ROW_OVERHEAD, WriteAheadLog


def count_drop(conn: sqlite3.Connection, prio: int, reason: str, records: int, readings: int) -> None:
    conn.execute("INSERT INTO wal_drops(prio, reason, records, readings) VALUES (?, ?, ?, ?) "
                 "ON CONFLICT(prio, reason) DO UPDATE SET records=records+excluded.records, "
                 "readings=readings+excluded.readings", (prio, reason, records, readings))


def read_drops(conn: sqlite3.Connection) -> dict[str, dict[str, int]]:
    """{"low/budget": {"records": .., "readings": ..}, ...}: every drop since the file was made."""
    return {f"{PRIORITY_NAMES[p]}/{reason}": {"records": rec, "readings": n}
            for p, reason, rec, n in conn.execute("SELECT prio, reason, records, readings FROM wal_drops")}


class Retention:
    def __init__(self, wal: WriteAheadLog, *, budget: int, ttl: tuple[float, float, float]):
        self.wal = wal
        self.budget = budget
        self.ttl = ttl
        self.over_budget = False        # only critical left and still above the budget

    def _delete_upto(self, conn: sqlite3.Connection, prio: int, last_id: int) -> tuple[int, int]:
        count, readings, size = conn.execute(
            "SELECT count(*), coalesce(sum(n), 0), coalesce(sum(size), 0) FROM wal_records "
            "WHERE prio=? AND id<=?", (prio, last_id)).fetchone()
        if count:
            # The sequence numbers of what goes must stay in use after a restart (see WriteAheadLog.open).
            conn.execute("INSERT INTO wal_sequences(device, next_seq) SELECT device, max(seq + n) FROM wal_records "
                         "WHERE prio=? AND id<=? GROUP BY device ON CONFLICT(device) "
                         "DO UPDATE SET next_seq=max(next_seq, excluded.next_seq)", (prio, last_id))
            conn.execute("DELETE FROM wal_records WHERE prio=? AND id<=?", (prio, last_id))
            self.wal.count_removed(conn, prio, count)
            stat = self.wal.live[prio]
            stat[0] -= count
            stat[1] -= readings
            stat[2] -= size + count * ROW_OVERHEAD
        return count, readings

    # --- the disk budget: after each group's appends ------------------------------------
    def enforce_budget(self, conn: sqlite3.Connection) -> dict[str, int] | None:
        live = self.wal.live
        over = sum(s[2] for s in live) - self.budget
        if over <= 0:
            self.over_budget = False
            return None
        dropped: dict[str, int] = {}
        for prio in (LOW, NORMAL):
            while over > 0 and live[prio][0]:
                rows = conn.execute("SELECT id, n, size FROM wal_records WHERE prio=? ORDER BY id LIMIT 1000",
                                    (prio,)).fetchall()
                if not rows:
                    break
                cut = rows[-1][0]
                need = over
                for rid, n, size in rows:
                    need -= size + ROW_OVERHEAD
                    if need <= 0:
                        cut = rid
                        break
                count, readings = self._delete_upto(conn, prio, cut)
                count_drop(conn, prio, "budget", count, readings)
                dropped[PRIORITY_NAMES[prio]] = dropped.get(PRIORITY_NAMES[prio], 0) + readings
                over = sum(s[2] for s in live) - self.budget
        self.over_budget = over > 0
        return {"dropped": dropped, "over_budget": self.over_budget, "bytes": sum(s[2] for s in live)}

    # --- periodic: acknowledged and expired records ------------------------------------
    def retain(self, conn: sqlite3.Connection, sinks: Iterable[str], now: float) -> dict[str, int]:
        """Delete what every sink in `sinks` has acknowledged, and what is past its TTL (counted)."""
        sinks = sorted(set(sinks))
        cursors: dict[tuple[str, int], int] = {
            (s, p): last for s, p, last in conn.execute("SELECT sink, prio, last_id FROM wal_cursors")}
        expired: dict[str, int] = {}
        for prio in (CRITICAL, NORMAL, LOW):
            if not self.wal.live[prio][0]:
                continue
            if sinks:
                acked = min(cursors.get((s, prio), 0) for s in sinks)
            else:
                # No route sends anywhere: nothing is waiting for these records.
                acked = conn.execute("SELECT coalesce(max(id), 0) FROM wal_records WHERE prio=?",
                                     (prio,)).fetchone()[0]
            if acked:
                self._delete_upto(conn, prio, acked)
            limit = now - self.ttl[prio]
            last = conn.execute("SELECT max(id) FROM wal_records WHERE prio=? AND created<?",
                                (prio, limit)).fetchone()[0]
            if last is not None:
                count, readings = self._delete_upto(conn, prio, last)
                if count:
                    count_drop(conn, prio, "ttl", count, readings)
                    expired[PRIORITY_NAMES[prio]] = readings
        return expired
