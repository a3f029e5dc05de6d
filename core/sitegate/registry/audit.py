"""The plugin audit log: one JSON object per line, appended, never rewritten.

Every install, upgrade, rollback, activation and refusal that store.py does
lands here with who, what, when and the result, so an operator can answer
"what code ran on this gateway, and who put it there".
"""

from __future__ import annotations

import getpass
import json
import os
import socket
from datetime import datetime, timezone
from pathlib import Path


def default_actor() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry in some containers
        user = f"uid{os.getuid()}"
    return f"{user}@{socket.gethostname()}"


class AuditLog:
    def __init__(self, path: Path, actor: str | None = None):
        self.path = Path(path)
        self.actor = actor or default_actor()

    def record(self, action: str, domain: str, result: str, **fields: object) -> dict:
        entry = {
            "at": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "who": self.actor,
            "action": action,
            "domain": domain,
            "result": result,
            **{k: v for k, v in fields.items() if v is not None},
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(entry, sort_keys=True) + "\n"
        # O_APPEND: concurrent writers (CLI and a running site) never interleave inside a line.
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        try:
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        return entry

    def entries(self) -> list[dict]:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.splitlines() if line.strip()]
