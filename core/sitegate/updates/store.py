"""Rollout state and the update audit log in SQLite (<state_dir>/updates.sqlite).

Everything the engine needs to resume after a crash is here: each rollout's
state, wave and soak deadline, each device's status and step. Written before the
step it records is taken. WAL mode; synchronous=NORMAL survives a process crash,
FULL (durability "power-loss") survives power loss too. The CLI writes operator
requests (start, pause, resume, abort) into the same file; the engine polls it.

Every write method is one transaction (its row and its audit line together).
`StateWriter` runs them off the trio thread for a running engine: one thread, its
own connection, the writes queued by many devices committed together.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import math
import os
import sqlite3
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

import trio

SCHEMA = """
CREATE TABLE IF NOT EXISTS rollouts (
    id TEXT PRIMARY KEY,
    entry TEXT NOT NULL,             -- the update handler entry that reaches the devices
    envelope TEXT NOT NULL,          -- the signed update manifest (JSON)
    payload_sha256 TEXT NOT NULL,    -- payload kept in <state>/updates/payloads/<sha256>
    policy TEXT NOT NULL,
    selector TEXT NOT NULL,          -- {"devices": [...]} or {"hardware": [...]} or {} for all fitting
    state TEXT NOT NULL,             -- created, running, paused, aborted, completed
    wave INTEGER NOT NULL DEFAULT 0,
    waves INTEGER NOT NULL DEFAULT 0,
    soak_until REAL,
    reason TEXT NOT NULL DEFAULT '',
    baseline TEXT NOT NULL DEFAULT '{}',   -- counts at the last resume: abort criteria count from there
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    created_by TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS targets (
    rollout TEXT NOT NULL,
    device TEXT NOT NULL,
    hardware_id TEXT NOT NULL DEFAULT '',
    wave INTEGER NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',   -- pending, in_progress, succeeded, failed, rolled_back
    step TEXT NOT NULL DEFAULT '',            -- stage, activate, health, commit, rollback
    failure TEXT NOT NULL DEFAULT '',         -- failed, refused, timed_out
    detail TEXT NOT NULL DEFAULT '',
    started_at REAL,
    finished_at REAL,
    PRIMARY KEY (rollout, device)
);
CREATE INDEX IF NOT EXISTS targets_wave ON targets (rollout, wave, status);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    who TEXT NOT NULL,
    rollout TEXT NOT NULL,
    device TEXT,
    action TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
);
"""

STATES = ("created", "running", "paused", "aborted", "completed")
FINAL = ("aborted", "completed")


def default_actor() -> str:
    try:
        return f"{getpass.getuser()}@{os.uname().nodename}"
    except Exception:  # noqa: BLE001 - no passwd entry in some containers
        return f"uid{os.getuid()}"


class RolloutStore:
    def __init__(self, state_dir: Path, *, durability: str = "process-crash", actor: str | None = None):
        self.dir = Path(state_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / "updates.sqlite"
        self.payload_dir = self.dir / "updates" / "payloads"
        self.actor = actor or default_actor()
        self.durability = durability
        self._depth = 0   # nesting of _transaction()
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(f"PRAGMA synchronous={'FULL' if durability == 'power-loss' else 'NORMAL'}")
        self.db.executescript(SCHEMA)

    def changed(self, rollout_id: str, state: str) -> None:
        """Hook for the engine's state cache (set by RolloutEngine)."""

    def close(self) -> None:
        self.db.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """One transaction; inside another one (a StateWriter batch) it joins that one."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self.db.execute("BEGIN IMMEDIATE")   # the write lock now: no busy snapshot later
        self._depth = 1
        try:
            yield
        except BaseException:
            self._depth = 0
            self.db.execute("ROLLBACK")
            raise
        self._depth = 0
        self.db.execute("COMMIT")

    # --- payloads -------------------------------------------------------------------
    def put_payload(self, sha256: str, payload: bytes) -> None:
        self.payload_dir.mkdir(parents=True, exist_ok=True)
        path = self.payload_dir / sha256
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(payload)
            os.replace(tmp, path)

    def payload(self, sha256: str) -> bytes:
        return (self.payload_dir / sha256).read_bytes()

    # --- rollouts -------------------------------------------------------------------
    def create(self, rollout_id: str, entry: str, envelope: dict, payload_sha256: str, policy: dict,
               selector: dict) -> None:
        now = time.time()
        try:
            with self._transaction():
                self.db.execute("INSERT INTO rollouts (id, entry, envelope, payload_sha256, policy, selector, state, "
                                "created_at, updated_at, created_by) VALUES (?,?,?,?,?,?,?,?,?,?)",
                                (rollout_id, entry, json.dumps(envelope), payload_sha256, json.dumps(policy),
                                 json.dumps(selector), "created", now, now, self.actor))
                self._audit(rollout_id, None, "create", f"entry {entry}, selector {json.dumps(selector)}")
        except sqlite3.IntegrityError:
            raise ValueError(f"rollout {rollout_id!r} already exists; pick another --id") from None

    def get(self, rollout_id: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT * FROM rollouts WHERE id = ?", (rollout_id,)).fetchone()
        return dict(row) if row else None

    def list(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self.db.execute("SELECT * FROM rollouts ORDER BY created_at")]

    def update(self, rollout_id: str, *, action: str | None = None, detail: str = "", **fields: Any) -> None:
        if "state" in fields:
            self.changed(rollout_id, fields["state"])
        fields["updated_at"] = time.time()
        cols = ", ".join(f"{k} = ?" for k in fields)
        with self._transaction():
            self.db.execute(f"UPDATE rollouts SET {cols} WHERE id = ?", (*fields.values(), rollout_id))
            if action:
                self._audit(rollout_id, None, action, detail)

    def request(self, rollout_id: str, verb: str) -> str:
        """An operator's pause/resume/abort; returns the new state or raises ValueError saying why not."""
        r = self.get(rollout_id)
        if r is None:
            raise ValueError(f"no rollout {rollout_id!r} (see `sitegate rollout status`)")
        state = r["state"]
        new = {"pause": "paused", "resume": "running", "abort": "aborted"}[verb]
        if state in FINAL:
            raise ValueError(f"rollout {rollout_id} is {state}; it cannot be {verb}d")
        if verb == "pause" and state not in ("running", "created"):
            raise ValueError(f"rollout {rollout_id} is {state}, not running")
        if verb == "resume" and state != "paused":
            raise ValueError(f"rollout {rollout_id} is {state}, not paused")
        if verb == "resume" and r["waves"] == 0:
            new = "created"   # never planned: plan when the site picks it up
        extra = {}
        if verb == "resume":
            # The failures that tripped the abort were judged by the operator who resumed: count anew.
            counts = self.counts(rollout_id)
            extra["baseline"] = json.dumps({"executed": counts["executed"], "failures": counts["failures"]})
        self.update(rollout_id, state=new, reason=f"{verb} by {self.actor}", action=verb, detail=f"{state} -> {new}",
                    **extra)
        return new

    # --- targets --------------------------------------------------------------------
    def add_targets(self, rollout_id: str, plan: Iterable[tuple[str, str, int]]) -> None:
        with self._transaction():
            self.db.executemany("INSERT OR IGNORE INTO targets (rollout, device, hardware_id, wave) VALUES (?,?,?,?)",
                                [(rollout_id, d, hw, w) for d, hw, w in plan])

    def targets(self, rollout_id: str, *, wave: int | None = None, status: Iterable[str] | None = None) -> list[dict]:
        sql, args = "SELECT * FROM targets WHERE rollout = ?", [rollout_id]
        if wave is not None:
            sql += " AND wave = ?"
            args.append(wave)
        if status is not None:
            status = list(status)
            sql += f" AND status IN ({','.join('?' * len(status))})"
            args += status
        return [dict(r) for r in self.db.execute(sql + " ORDER BY wave, device", args)]

    def set_target(self, rollout_id: str, device: str, *, action: str | None = None, **fields: Any) -> None:
        cols = ", ".join(f"{k} = ?" for k in fields)
        with self._transaction():
            self.db.execute(f"UPDATE targets SET {cols} WHERE rollout = ? AND device = ?",
                            (*fields.values(), rollout_id, device))
            if action:
                self._audit(rollout_id, device, action, fields.get("detail", ""))

    def counts(self, rollout_id: str) -> dict[str, Any]:
        by_status = {s: n for s, n in self.db.execute(
            "SELECT status, COUNT(*) FROM targets WHERE rollout = ? GROUP BY status", (rollout_id,))}
        failures = {f: n for f, n in self.db.execute(
            "SELECT failure, COUNT(*) FROM targets WHERE rollout = ? AND failure != '' GROUP BY failure", (rollout_id,))}
        total = sum(by_status.values())
        executed = by_status.get("succeeded", 0) + by_status.get("failed", 0) + by_status.get("rolled_back", 0)
        return {"total": total, "executed": executed, "succeeded": by_status.get("succeeded", 0),
                "failed": by_status.get("failed", 0) + by_status.get("rolled_back", 0),
                "rolled_back": by_status.get("rolled_back", 0), "in_progress": by_status.get("in_progress", 0),
                "pending": by_status.get("pending", 0), "failures": failures}

    # --- audit ----------------------------------------------------------------------
    def _audit(self, rollout_id: str, device: str | None, action: str, detail: str = "") -> None:
        self.db.execute("INSERT INTO audit (at, who, rollout, device, action, detail) VALUES (?,?,?,?,?,?)",
                        (time.time(), self.actor, rollout_id, device, action, detail))

    def audit(self, rollout_id: str, device: str | None, action: str, detail: str = "") -> None:
        with self._transaction():
            self._audit(rollout_id, device, action, detail)

    def audit_log(self, rollout_id: str | None = None, *, device: str | None = None, limit: int | None = None) -> list[dict]:
        sql, args = "SELECT * FROM audit WHERE 1=1", []
        if rollout_id:
            sql += " AND rollout = ?"
            args.append(rollout_id)
        if device:
            sql += " AND device = ?"
            args.append(device)
        sql += " ORDER BY id"
        if limit:
            sql = f"SELECT * FROM ({sql[:-len(' ORDER BY id')]} ORDER BY id DESC LIMIT {int(limit)}) ORDER BY id"
        return [dict(r) for r in self.db.execute(sql, args)]


class StateWriter:
    """Runs store methods for the engine off the trio thread, in order, many per commit.

    `await writer.call("set_target", rollout_id, device, ...)` returns once the write is
    committed (what the engine writes before a step is on disk before the step is taken,
    as with the store itself), or raises what the method raised. Calls queued while a
    commit runs go into the next one, each in a savepoint of its own, so one failing call
    fails only its caller. One worker thread with its own connection; readers on the trio
    thread never wait for it (WAL).
    """

    def __init__(self, store: RolloutStore):
        self.store = store
        self._db: RolloutStore | None = None
        self._send, self._receive = trio.open_memory_channel(math.inf)
        self._limiter = trio.CapacityLimiter(1)
        self.commits = 0
        self.calls = 0

    async def call(self, method: str, *args: Any, **kw: Any) -> Any:
        slot: list[Any] = [trio.Event(), None, None]
        self._send.send_nowait((method, args, kw, slot))
        await slot[0].wait()
        if slot[2] is not None:
            raise slot[2]
        return slot[1]

    def _open(self) -> RolloutStore:
        return RolloutStore(self.store.dir, durability=self.store.durability, actor=self.store.actor)

    def _run_batch(self, batch: list[tuple]) -> None:
        store = self._db
        db = store.db
        db.execute("BEGIN IMMEDIATE")
        store._depth = 1
        try:
            for method, args, kw, slot in batch:
                db.execute("SAVEPOINT call")
                try:
                    slot[1] = getattr(store, method)(*args, **kw)
                except Exception as exc:  # noqa: BLE001 - goes to the caller
                    db.execute("ROLLBACK TO call")
                    slot[2] = exc
                db.execute("RELEASE call")
            store._depth = 0
            db.execute("COMMIT")
        except BaseException:
            store._depth = 0
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        self._db = await trio.to_thread.run_sync(self._open, limiter=self._limiter)
        task_status.started(self)
        try:
            while True:
                batch = [await self._receive.receive()]
                while True:
                    try:
                        batch.append(self._receive.receive_nowait())
                    except trio.WouldBlock:
                        break
                try:
                    # Not cancellable half-way: a batch either commits or fails as a whole.
                    await trio.to_thread.run_sync(self._run_batch, batch, limiter=self._limiter)
                    self.commits += 1
                    self.calls += len(batch)
                except Exception as exc:  # noqa: BLE001 - the commit failed: every caller of the batch hears it
                    for *_, slot in batch:
                        slot[1], slot[2] = None, exc
                finally:
                    for *_, slot in batch:
                        slot[0].set()
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(self._db.close, limiter=self._limiter)
