"""How long the rollout engine holds the trio thread for its state (SQLite), per device.

    python -m tests.updates.measure_store [DEVICES] [--durability process-crash|power-loss]

The handler answers every step at once (a trio checkpoint), so what is left is the
engine's own work: its store writes and reads and its events. Prints the wall time of
a rollout to DEVICES devices (no soak, 50 at once), the time trio task steps took in
all, and the longest single step (how long the loop could not serve anything else).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import nacl.signing
import trio

from sitegate.updates import sign_update
from sitegate.updates.policy import RolloutPolicy
from sitegate.updates.rollout import RolloutEngine
from sitegate.updates.store import RolloutStore


class InstantHandler:
    def __init__(self, count: int):
        self.devices = {f"d{i:05d}": {"hardware_id": "hw"} for i in range(count)}

    def inventory(self) -> dict:
        return self.devices

    async def stage(self, device, artifact):
        await trio.lowlevel.checkpoint()

    async def activate(self, device):
        await trio.lowlevel.checkpoint()

    async def health_check(self, device, deadline):
        await trio.lowlevel.checkpoint()
        return True

    async def commit(self, device):
        await trio.lowlevel.checkpoint()

    async def rollback(self, device):
        await trio.lowlevel.checkpoint()


class Steps(trio.abc.Instrument):
    """Time spent in task steps on the trio thread, and the longest one."""

    def __init__(self):
        self.total = self.longest = 0.0
        self._t: float | None = None

    def before_task_step(self, task):
        self._t = time.perf_counter()

    def after_task_step(self, task):
        if self._t is None:
            return   # the step that added this instrument
        d = time.perf_counter() - self._t
        self.total += d
        self.longest = max(self.longest, d)


async def measure(count: int, durability: str, state: Path) -> dict:
    key = nacl.signing.SigningKey(b"\x05" * 32)
    artifact = sign_update(b"x" * 256, key, name="fw", version="1.1.0", release_counter=2, hardware_ids=["hw"])
    engine = RolloutEngine(RolloutStore(state, durability=durability), lambda entry: InstantHandler(count),
                           poll=0.05)
    handler = InstantHandler(count)
    engine.handler_for = lambda entry: handler
    steps = Steps()
    async with trio.open_nursery() as nursery:
        await nursery.start(engine.run)
        trio.lowlevel.add_instrument(steps)
        t0 = time.perf_counter()
        rid = engine.start("e", artifact, policy=RolloutPolicy(soak=0, max_concurrent=50, device_timeout=60,
                                                              waves=(1.0, 10.0, 50.0, 100.0)))
        while engine.status(rid)[0]["state"] not in ("completed", "paused"):
            await trio.sleep(0.01)
        wall = time.perf_counter() - t0
        trio.lowlevel.remove_instrument(steps)
        r = engine.status(rid)[0]
        nursery.cancel_scope.cancel()
    assert r["state"] == "completed" and r["succeeded"] == count, r
    return {"devices": count, "durability": durability, "wall_s": round(wall, 3),
            "loop_busy_ms_per_device": round(steps.total * 1000 / count, 3),
            "longest_step_ms": round(steps.longest * 1000, 2),
            **({"writer_calls_per_commit": round(engine.writer.calls / max(1, engine.writer.commits), 1)}
               if hasattr(engine, "writer") else {})}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("devices", type=int, nargs="?", default=1000)
    p.add_argument("--durability", default="process-crash", choices=("process-crash", "power-loss"))
    args = p.parse_args()
    with tempfile.TemporaryDirectory(dir=Path(__file__).resolve().parent) as tmp:
        print(trio.run(measure, args.devices, args.durability, Path(tmp)))


if __name__ == "__main__":
    main()
