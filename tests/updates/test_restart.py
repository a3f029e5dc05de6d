"""A gateway killed with SIGKILL mid-wave resumes the rollout exactly where it was after restart."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import trio

from examples.devices.fleet import Fleet

REPO = Path(__file__).resolve().parents[2]
DETAIL = "SELECT device, status, step, detail FROM targets WHERE status != 'pending'"


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gateway(state: Path, port: int, key: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tests.updates.gateway_proc", str(state), str(port), key, *extra],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def query(state: Path, sql: str) -> list[tuple]:
    path = state / "updates.sqlite"
    if not path.exists():
        return []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return db.execute(sql).fetchall()
    except sqlite3.OperationalError:
        return []   # schema not there yet
    finally:
        db.close()


async def wait_for(state: Path, sql: str, ok, timeout: float):
    with trio.fail_after(timeout):
        while not ok(rows := query(state, sql)):
            await trio.sleep(0.05)
    return rows


async def test_gateway_sigkilled_mid_wave_resumes_after_restart(tmp_path, publisher_key, make_artifact):
    state, port = tmp_path / "state", free_udp_port()
    key = publisher_key.verify_key.encode().hex()
    artifact = make_artifact(size=16 * 1024).save(tmp_path / "artifacts")
    fleet = Fleet(200, ("127.0.0.1", port), [key], hardware=["th-v1", "th-v2", "th-v3"], keepalive=0.5)
    async with trio.open_nursery() as nursery:
        await nursery.start(fleet.run)
        first = gateway(state, port, key, str(artifact), "200")
        try:
            # Mid-wave, past the canary: some devices of a wave done, some in flight.
            await wait_for(state, "SELECT wave, status FROM targets WHERE rollout='r1'",
                           lambda rows: sum(1 for w, s in rows if w >= 1 and s == "succeeded") >= 4
                           and any(s == "in_progress" and w >= 1 for w, s in rows), 40)
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        assert first.returncode == -signal.SIGKILL
        before = dict(query(state, "SELECT device, status FROM targets WHERE rollout='r1'"))
        interrupted = sorted(d for d, s in before.items() if s == "in_progress")
        assert interrupted and query(state, "SELECT state FROM rollouts")[0][0] == "running"

        second = gateway(state, port, key)
        try:
            await wait_for(state, "SELECT state FROM rollouts WHERE id='r1'", lambda rows: rows[0][0] == "completed", 50)
        except trio.TooSlowError:
            second.kill()
            raise AssertionError(f"not completed: {query(state, 'SELECT state, wave, reason FROM rollouts')} "
                                 f"{query(state, DETAIL)}\n"
                                 f"{second.stderr.read().decode()[-3000:]}") from None
        finally:
            if second.poll() is None:
                second.send_signal(signal.SIGTERM)
            second.wait(10)
        nursery.cancel_scope.cancel()

    assert fleet.summary()["versions"] == {"1.1.0": 200}
    assert all(not n.slots["firmware"].trial for n in fleet.nodes.values())
    # Exactly where it was: nobody updated twice, nobody done before the kill touched again.
    assert all(n.activations == 1 for n in fleet.nodes.values())
    done_before = {d for d, s in before.items() if s == "succeeded"}
    restarted = {d for (d,) in query(state, "SELECT device FROM audit WHERE action='device_start' AND id > "
                                            "(SELECT MAX(id) FROM audit WHERE action='device_succeeded' AND device IN "
                                            f"({','.join(repr(x) for x in sorted(done_before))}))")}
    assert not (restarted & done_before)
    resumed = {d for (d,) in query(state, "SELECT device FROM audit WHERE action='device_start' AND detail='resumed'")}
    assert set(interrupted) <= resumed
