"""Shared helpers of the data-plane tests: the fixture plugins and reading what a file sink got."""

from __future__ import annotations

import json
from pathlib import Path



FIXTURES = Path(__file__).parent / "fixture_plugins"


def poison_site(folder: Path, extra: str = "") -> str:
    """A site whose file sink `out` refuses the value 7.0 for good: the acklog adapter `src`'s two
    devices each produce one such round of points a and b, so four sink dead letters."""
    return f"""
site: t
entries:
  - {{id: src, domain: acklog, config: {{ack_path: {folder}/ack, limit: 12, interval: 0}}}}
  - {{id: out, domain: filesink, config: {{path: {folder}/out, poison: 7.0}}}}
routes:
  - {{from: ["src.*/*"], to: [out], priority: critical}}
{extra}"""


def sink_lines(path: Path) -> list[dict]:
    """Every complete JSON line a file sink wrote (a line cut by a kill is ignored)."""
    if not Path(path).exists():
        return []
    out = []
    for line in Path(path).read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return out


def acked(path: Path) -> set[tuple[str, int]]:
    """(device, seq) of every reading the acklog adapter saw acknowledged."""
    out = set()
    if not Path(path).exists():
        return out
    for line in Path(path).read_text().splitlines():
        parts = line.split()
        if len(parts) != 3:
            continue      # cut by a kill mid-write
        d, s, n = parts[0], int(parts[1]), int(parts[2])
        out.update((d, s + i) for i in range(n))
    return out




import os
import signal
import subprocess
import sys
import time

REPO = Path(__file__).resolve().parents[2]


def start_gateway(site: Path, log: Path) -> subprocess.Popen:
    """`sitegate run` in its own process, loading first-party and fixture plugins unsigned."""
    return subprocess.Popen(
        [sys.executable, "-m", "sitegate.cli", "run", str(site), "--dev-plugins", str(REPO / "plugins"),
         "--dev-plugins", str(FIXTURES), "--log-level", "WARNING"],
        stdout=open(log, "ab"), stderr=subprocess.STDOUT, cwd=str(site.parent))


def wait_until(condition, timeout: float, what: str, proc: subprocess.Popen | None = None, poll: float = 0.01):
    """Poll `condition` until truthy (returned) or fail after `timeout` s; fail early if `proc` died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"gateway exited with {proc.returncode} while waiting for {what}")
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def stop_gateway(proc: subprocess.Popen, timeout: float = 15.0) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError("gateway did not stop on SIGTERM")


def kill_gateway(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
