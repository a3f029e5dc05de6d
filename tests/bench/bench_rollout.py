"""Rollout benchmark: a 256 KiB firmware to 1,000 simulated MQTT-SN nodes on loopback.

`rollout_1000`: wall time from `start` to `completed` with the default waves
(1% with one canary per hardware id, 10%, 50%, 100%), a health check and commit on
every node, and a SHORT soak of 1 s per wave (production soaks are minutes; the
figure is transfer and orchestration, not waiting). The fleet runs in another
process (examples/devices); the gateway side (handler, engine, SQLite state) here.
Chunks of 1 KiB (the handler's default); `rollout_1000_chunk4k` repeats it with 4 KiB
datagrams. `*_gateway_cpu` is the gateway process's CPU time, meaningful on a shared machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nacl.signing
import trio

REPO = Path(__file__).resolve().parents[2]
DEVICES = 1000
SIZE = 256 * 1024
SOAK = 1.0
CHUNKS = (1024, 4096)   # the handler's default (a cautious MQTT-SN datagram), and 4 KiB datagrams
CONCURRENT = 100
TARGET = 120.0
NAME = "rollout_1000"   # `python -m tests.bench rollout_1000` finds this module by this literal


async def _rollout(state: Path, chunk: int) -> dict:
    from plugins.mqttsn_update import trusted_from_hex
    from plugins.mqttsn_update.handler import MqttsnUpdateHandler
    from sitegate.updates import sign_update
    from sitegate.updates.policy import RolloutPolicy
    from sitegate.updates.rollout import RolloutEngine
    from sitegate.updates.store import RolloutStore

    key = nacl.signing.SigningKey.generate()
    hexkey = key.verify_key.encode().hex()
    handler = MqttsnUpdateHandler(trusted_from_hex([hexkey]), chunk_size=chunk, retry=0.5, request_timeout=20)
    payload = os.urandom(SIZE)
    artifact = sign_update(payload, key, name="th-node-fw", version="2.0.0", release_counter=2,
                           hardware_ids=["th-v1", "th-v2", "th-v3"])
    async with trio.open_nursery() as nursery:
        port = await nursery.start(handler.serve)
        fleet = subprocess.Popen([sys.executable, "-m", "examples.devices", "--gateway", f"127.0.0.1:{port}",
                                  "--count", str(DEVICES), "--trust", hexkey, "--hw", "th-v1,th-v2,th-v3"],
                                 cwd=REPO, stdout=subprocess.DEVNULL)
        try:
            with trio.fail_after(60):
                while len(handler.devices) < DEVICES:
                    await trio.sleep(0.05)
            engine = RolloutEngine(RolloutStore(state), lambda entry: handler, poll=0.2)
            await nursery.start(engine.run)
            policy = RolloutPolicy(soak=SOAK, device_timeout=120, health_window=10, max_concurrent=CONCURRENT)
            cpu0, t0 = time.process_time(), time.perf_counter()
            rid = engine.start("nodes", artifact, policy=policy)
            with trio.fail_after(600):
                while (status := engine.status(rid)[0])["state"] not in ("completed", "paused"):
                    await trio.sleep(0.1)
            wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        finally:
            fleet.terminate()
            fleet.wait(10)
        nursery.cancel_scope.cancel()
    return {"wall": wall, "cpu": cpu, "status": status, "counters": handler.counters}


def run() -> list[dict]:
    figures = []
    for chunk in CHUNKS:
        with tempfile.TemporaryDirectory() as tmp:
            result = trio.run(_rollout, Path(tmp), chunk)
        st = result["status"]
        ok = st["state"] == "completed" and st["succeeded"] == DEVICES
        print(f"rollout_1000 (chunk {chunk} B): {st['state']}, {st['succeeded']}/{st['total']} nodes, "
              f"{result['wall']:.1f} s wall, gateway CPU {result['cpu']:.1f} s, soak {SOAK:g} s/wave, "
              f"{result['counters']}", file=sys.stderr)
        suffix = "" if chunk == CHUNKS[0] else f"_chunk{chunk // 1024}k"
        figures += [
            {"name": f"{NAME}{suffix}", "value": round(result["wall"], 2), "unit": "s", "baseline": None,
             "ratio": None, "target": f"<={TARGET:g}", "passed": ok and result["wall"] <= TARGET},
            {"name": f"{NAME}{suffix}_gateway_cpu", "value": round(result["cpu"], 2), "unit": "s",
             "baseline": None, "ratio": None, "target": "-", "passed": ok},
        ]
    return figures


if __name__ == "__main__":  # pragma: no cover
    for fig in run():
        print(fig)
