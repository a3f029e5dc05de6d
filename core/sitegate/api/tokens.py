"""Access tokens of the WebSocket API: created, checked, revoked; only their hashes are stored.

A token reads `sg_<id>_<secret>`; the SQLite file `<state_dir>/api_tokens.db`
keeps id, name, role and sha256(secret). `sitegate token` (cli/token.py) and
the API server (server.py) share this store; the server re-reads revocations.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
import time
from pathlib import Path

import attrs

from .messages import ROLES

FILENAME = "api_tokens.db"


@attrs.frozen
class TokenInfo:
    id: str
    name: str
    role: str
    created_at: float
    revoked_at: float | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


def _hash(secret: str) -> str:
    # The secret is 256 random bits, so a fast hash is enough: there is nothing to brute-force
    # that a slow KDF would protect (it matters for passwords people choose, not for these).
    return hashlib.sha256(secret.encode()).hexdigest()


class TokenStore:
    def __init__(self, state_dir: Path | str):
        self.path = Path(state_dir) / FILENAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._db() as db:
            db.execute("CREATE TABLE IF NOT EXISTS tokens (id TEXT PRIMARY KEY, name TEXT NOT NULL, "
                       "role TEXT NOT NULL, hash TEXT NOT NULL, created_at REAL NOT NULL, revoked_at REAL)")

    def _db(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=5)
        db.execute("PRAGMA journal_mode=WAL")
        return db

    def create(self, role: str, name: str = "") -> tuple[str, TokenInfo]:
        """A new token (shown once: only its hash is kept) and its record."""
        if role not in ROLES:
            raise ValueError(f"role: expected one of {', '.join(ROLES)}, got {role!r}")
        tid = secrets.token_hex(4)
        secret = secrets.token_urlsafe(32)
        info = TokenInfo(tid, name or f"{role}-{tid}", role, time.time())
        with self._db() as db:
            db.execute("INSERT INTO tokens VALUES (?, ?, ?, ?, ?, NULL)",
                       (info.id, info.name, info.role, _hash(secret), info.created_at))
        return f"sg_{tid}_{secret}", info

    def check(self, token: str) -> TokenInfo | None:
        """The token's record if it is known and not revoked, else None (never says which part was wrong)."""
        parts = token.split("_", 2) if isinstance(token, str) else []
        if len(parts) != 3 or parts[0] != "sg":
            return None
        with self._db() as db:
            row = db.execute("SELECT id, name, role, created_at, revoked_at, hash FROM tokens WHERE id = ?",
                             (parts[1],)).fetchone()
        if row is None or not hmac.compare_digest(row[5], _hash(parts[2])) or row[4] is not None:
            return None
        return TokenInfo(*row[:5])

    def revoke(self, which: str) -> list[TokenInfo]:
        """Revoke by id or by name; returns what was revoked (empty if nothing matched)."""
        now = time.time()
        with self._db() as db:
            rows = db.execute("SELECT id FROM tokens WHERE (id = ? OR name = ?) AND revoked_at IS NULL",
                              (which, which)).fetchall()
            db.executemany("UPDATE tokens SET revoked_at = ? WHERE id = ?", [(now, r[0]) for r in rows])
        return [t for t in self.list() if t.id in {r[0] for r in rows}]

    def revoked_among(self, ids: set[str]) -> set[str]:
        """Which of these token ids are revoked (or deleted) now: the server polls this."""
        if not ids:
            return set()
        with self._db() as db:
            marks = ",".join("?" * len(ids))
            live = {r[0] for r in db.execute(
                f"SELECT id FROM tokens WHERE id IN ({marks}) AND revoked_at IS NULL", tuple(ids))}
        return ids - live

    def list(self) -> list[TokenInfo]:
        with self._db() as db:
            rows = db.execute("SELECT id, name, role, created_at, revoked_at FROM tokens ORDER BY created_at").fetchall()
        return [TokenInfo(*r) for r in rows]


def ensure_demo_token(state_dir: Path | str, role: str = "operator") -> str:
    """A fresh token named `demo-<role>` for `make run` to print; earlier demo tokens are revoked
    (the store keeps only hashes, so an old one cannot be shown again)."""
    store = TokenStore(state_dir)
    store.revoke(f"demo-{role}")
    token, _ = store.create(role, f"demo-{role}")
    return token
