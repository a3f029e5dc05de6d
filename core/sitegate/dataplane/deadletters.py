"""The dead-letter table's questions and actions, shared by `sitegate dlq` and the WebSocket API.

Everything here takes an open connection to the site's WAL file: the CLI's own (it may run
beside the site, SQLite allows the second writer) or the WAL writer's (the API runs these
inside a group's transaction through WriteAheadLog.call, so the running site's counters see
the change at once). What the kinds of dead letter are and what replaying them does:
wal.py's comment on DEAD_LETTER_COLUMNS, docs/delivery.md.

Listing never returns payloads; `show` does (ingress: the raw payload; sink: the readings).
"""

from __future__ import annotations

import sqlite3
from typing import Any, Sequence

import attrs

from ..errors import SitegateError
from .wal import PRIORITY_NAMES, batch_of

KINDS = ("sink", "ingress")


@attrs.frozen
class Selection:
    """Which dead letters to act on: ids, and/or one entry, and/or one kind; `all` for every one."""

    ids: tuple[int, ...] = ()
    entry: str | None = None
    kind: str | None = None
    all: bool = False

    def __attrs_post_init__(self) -> None:
        if self.kind is not None and self.kind not in KINDS:
            raise SitegateError(f"kind: expected one of {', '.join(KINDS)}, got {self.kind!r}")

    def where(self, *, require: bool = True) -> tuple[str, list]:
        """(" WHERE ...", params); with `require`, a selection that names nothing is refused."""
        clauses: list[str] = []
        params: list[Any] = []
        if self.ids:
            clauses.append(f"id IN ({','.join('?' * len(self.ids))})")
            params.extend(int(i) for i in self.ids)
        elif require and not self.all and not self.entry and not self.kind:
            raise SitegateError("say which dead letters: ids, all, an entry or a kind")
        if self.entry:
            clauses.append("sink=?")
            params.append(self.entry)
        if self.kind:
            clauses.append("kind=?")
            params.append(self.kind)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


_LIST_COLUMNS = ("id, kind, sink, prio, device, seq, n, failed_at, error, source, length(body), attempts, replay, "
                 "note")


def _summary(r: tuple) -> dict[str, Any]:
    if r[1] == "ingress":
        return {"id": r[0], "kind": "ingress", "entry": r[2], "source": r[9], "device": r[4] or None, "bytes": r[10],
                "failed_at": r[7], "error": r[8], "attempts": r[11], "replay_requested": r[12] or None,
                "note": r[13] or None}
    return {"id": r[0], "kind": r[1], "sink": r[2], "entry": r[2], "priority": PRIORITY_NAMES[r[3]], "device": r[4],
            "seq": r[5], "readings": r[6], "failed_at": r[7], "error": r[8]}


def list_dead_letters(conn: sqlite3.Connection, sel: Selection = Selection(), *, after: int = 0,
                      limit: int | None = None) -> list[dict[str, Any]]:
    """Dead letters (oldest first, ids above `after`, at most `limit`) without their payloads."""
    where, params = sel.where(require=False)
    where += (" AND" if where else " WHERE") + " id>?"
    params.append(int(after))
    sql = f"SELECT {_LIST_COLUMNS} FROM dead_letters{where} ORDER BY id"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(int(limit))
    return [_summary(r) for r in conn.execute(sql, params)]


def show_dead_letter(conn: sqlite3.Connection, dead_letter_id: int, site: str) -> dict[str, Any]:
    """One dead letter with what it holds: an ingress one's payload (as text when it is UTF-8, and as
    hex), a sink one's readings with their msgIds. SitegateError when there is none."""
    from ..model import message_id
    row = conn.execute("SELECT id, sink, prio, device, seq, n, failed_at, error, body, kind, source, context, "
                       "attempts, replay, note FROM dead_letters WHERE id=?", (int(dead_letter_id),)).fetchone()
    if row is None:
        raise SitegateError(f"no dead letter with id {dead_letter_id}")
    if row[9] == "ingress":
        payload = bytes(row[8])
        try:
            text: str | None = payload.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        return {"id": row[0], "kind": "ingress", "entry": row[1], "source": row[10], "device": row[3] or None,
                "context": row[11] or None, "error": row[7], "failed_at": row[6], "attempts": row[12],
                "replay_requested": row[13] or None, "note": row[14] or None, "bytes": len(payload),
                "payload_text": text, "payload_hex": payload.hex()}
    b = batch_of(row[3], row[4], row[8])
    return {"id": row[0], "kind": "sink", "sink": row[1], "entry": row[1], "priority": PRIORITY_NAMES[row[2]],
            "device": row[3], "error": row[7], "failed_at": row[6],
            "readings": [{"msgId": message_id(site or "<site>", b.device, b.seq + i), "seq": b.seq + i, "point": p,
                          "value": v, "ts": t, "quality": q} for i, (p, v, t, q) in enumerate(b.rows())]}


@attrs.frozen
class Replayed:
    """What `replay_dead_letters` did: sink ones put back in the WAL, ingress ones asked for."""

    records: list[tuple[int, int, int]]   # per sink dead letter back in wal_records: (prio, readings, size)
    first_id: int                         # the wal_records id of the first of them (consecutive)
    ingress: list[int]                    # ids of the ingress dead letters marked for the running site

    @property
    def readings(self) -> int:
        return sum(r[1] for r in self.records)


def replay_dead_letters(conn: sqlite3.Connection, sel: Selection, now: float, *, in_transaction: bool = False) -> Replayed:
    """Sink dead letters go back to the WAL for their sink with their sequence numbers (same msgIds)
    and leave the table; ingress ones are marked (`replay`) for the running site to decode again.
    Opens its own transaction unless `in_transaction` (the WAL writer's group)."""
    where, params = sel.where()
    where += " AND" if where else " WHERE"
    if not in_transaction:
        conn.execute("BEGIN IMMEDIATE")
    try:
        rows = conn.execute(f"SELECT id, sink, prio, device, seq, n, body FROM dead_letters{where} kind='sink' "
                            "ORDER BY id", params).fetchall()
        first = 0
        if rows:
            conn.executemany("INSERT INTO wal_records(prio, device, seq, n, targets, created, size, body) "
                             "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                             [(r[2], r[3], r[4], r[5], f",{r[1]},", now, len(r[6]), r[6]) for r in rows])
            # One writer holds the lock: the rows got consecutive ids ending at the last one.
            first = conn.execute("SELECT last_insert_rowid()").fetchone()[0] - len(rows) + 1
            conn.executemany("DELETE FROM dead_letters WHERE id=?", [(r[0],) for r in rows])
        asked = [r[0] for r in conn.execute(f"SELECT id FROM dead_letters{where} kind='ingress' ORDER BY id", params)]
        conn.executemany("UPDATE dead_letters SET replay=?, note='' WHERE id=?", [(now, i) for i in asked])
    except BaseException:
        if not in_transaction:
            conn.execute("ROLLBACK")
        raise
    if not in_transaction:
        conn.execute("COMMIT")
    return Replayed([(r[2], r[5], len(r[6])) for r in rows], first, asked)


def purge_dead_letters(conn: sqlite3.Connection, sel: Selection) -> dict[str, int]:
    """Delete the selected dead letters for good; how many of each kind went."""
    where, params = sel.where()
    gone = dict.fromkeys(KINDS, 0)
    for kind, n in conn.execute(f"SELECT kind, count(*) FROM dead_letters{where} GROUP BY kind", params).fetchall():
        gone[kind] = n
    conn.execute(f"DELETE FROM dead_letters{where}", params)
    return gone


def count_dead_letters(conn: sqlite3.Connection) -> dict[str, int]:
    """Dead letters in the table by kind (an index scan: a few ms per hundred thousand)."""
    out = dict.fromkeys(KINDS, 0)
    for kind, n in conn.execute("SELECT kind, count(*) FROM dead_letters GROUP BY kind"):
        out[kind] = n
    return out


def ingress_outcome(conn: sqlite3.Connection, asked: Sequence[int]) -> dict[str, Any]:
    """Where ingress replays asked for stand: decoded (gone), still pending, failed again (with the
    new error), not tried (with the note)."""
    marks = ",".join("?" * len(asked))
    left = {r[0]: r[1:] for r in conn.execute(
        f"SELECT id, replay, error, attempts, note FROM dead_letters WHERE id IN ({marks})", list(asked))} if asked else {}
    return {"decoded": [i for i in asked if i not in left],
            "pending": [i for i, r in left.items() if r[0]],
            "failed": [(i, r[1]) for i, r in left.items() if not r[0] and not r[3]],
            "untried": [(i, r[3]) for i, r in left.items() if not r[0] and r[3]]}
