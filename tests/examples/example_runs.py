"""Running an example's single command as a child process and waiting on what it produces.

Waits are on conditions with deadlines (a log line, rows in a SQLite file), never sleeps;
`stop` sends SIGTERM as a user's Ctrl-C would and returns the output.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[2]
SITEGATE = [sys.executable, "-m", "sitegate.cli"]


class Child:
    """A command whose combined output is collected by a thread, so waiting never blocks on a pipe."""

    def __init__(self, argv: list[str], *, cwd: Path = REPO, env: dict[str, str] | None = None):
        self.argv = argv
        self.lines: list[str] = []
        self.proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
                                     start_new_session=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_until(self, condition: Callable[[], object], timeout: float, what: str) -> object:
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            if self.proc.poll() is not None:
                self._reader.join(5)
                raise AssertionError(f"{what}: the command exited with {self.proc.returncode} first:\n{self.output}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:g} s waiting for {what}:\n{self.output[-6000:]}")
            time.sleep(0.05)

    def wait_line(self, text: str, timeout: float = 120) -> str:
        return self.wait_until(lambda: next((l for l in list(self.lines) if text in l), None), timeout,
                               f"a line containing {text!r}")

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM (the whole process group) and wait; returns the exit status."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._reader.join(5)
        return self.proc.returncode


def history_rows(state_dir: Path, entry: str = "hist") -> list[tuple]:
    """(device, point, value) rows of a history entry's raw table; [] until the file and table exist."""
    path = state_dir / "entries" / entry / "history.sqlite"
    if not path.exists():
        return []
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
        try:
            return db.execute("SELECT device, point, value FROM raw").fetchall()
        finally:
            db.close()
    except sqlite3.OperationalError:
        return []      # created but not yet migrated: ask again
