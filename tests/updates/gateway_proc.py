"""The gateway side of the restart test, as its own process: update handler on a fixed port and the engine.

    python -m tests.updates.gateway_proc STATE PORT KEYHEX [ARTIFACT.update.json COUNT]

With an artifact it starts rollout "r1" once COUNT nodes are known; without, it only
resumes what the state folder holds. Runs until killed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import trio

from plugins.mqttsn_update import trusted_from_hex
from plugins.mqttsn_update.handler import MqttsnUpdateHandler
from sitegate.updates import UpdateArtifact
from sitegate.updates.policy import RolloutPolicy
from sitegate.updates.rollout import RolloutEngine
from sitegate.updates.store import RolloutStore

POLICY = RolloutPolicy(soak=0.3, device_timeout=20, health_window=5, max_concurrent=6)


async def main(state: Path, port: int, key: str, artifact: Path | None, count: int) -> None:
    handler = MqttsnUpdateHandler(trusted_from_hex([key]), port=port, retry=0.3, request_timeout=5)
    async with trio.open_nursery() as nursery:
        await nursery.start(handler.serve)
        engine = RolloutEngine(RolloutStore(state), lambda entry: handler, poll=0.1)
        if artifact is not None:
            with trio.fail_after(30):
                while len(handler.devices) < count:
                    await trio.sleep(0.02)
            engine.start("nodes", UpdateArtifact.load(artifact), policy=POLICY, rollout_id="r1")
        await nursery.start(engine.run)
        print("gateway ready", flush=True)


if __name__ == "__main__":
    args = sys.argv[1:]
    trio.run(main, Path(args[0]), int(args[1]), args[2], Path(args[3]) if len(args) > 3 else None,
             int(args[4]) if len(args) > 4 else 0)
