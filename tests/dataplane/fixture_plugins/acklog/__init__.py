"""An adapter for tests: publishes numbered readings and logs each acknowledgement to a file.

Every line of `ack_path` is written only after `entry.publish` returned, i.e.
after the data plane committed the batch: "device first_seq count". A test
that kills the process knows exactly which readings were acknowledged.
"""

from __future__ import annotations

import os

import attrs
import trio

from sitegate.hookspecs import hookimpl
from sitegate.model import Batch, DeviceInfo, PointInfo


@attrs.frozen
class AckLogConfig:
    ack_path: str
    devices: int = 2
    points: list[str] = attrs.Factory(lambda: ["a", "b"])
    interval: float = 0.001        # seconds between rounds (0: as fast as commits allow)
    restricted: list[str] = attrs.Factory(list)
    limit: int = 0                 # stop after this many rounds (0: never)
    value: float | None = None     # publish this value instead of the round number


@hookimpl
def config_schema():
    return AckLogConfig


@hookimpl
async def setup_entry(entry) -> None:
    cfg: AckLogConfig = entry.config
    devices = [entry.device_name(f"d{i}") for i in range(cfg.devices)]
    for d in devices:
        entry.declare_device(DeviceInfo(d, entry.id, points=tuple(
            PointInfo(p, restricted=p in cfg.restricted) for p in cfg.points)))
    fd = os.open(cfg.ack_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    entry.on_unload(lambda: os.close(fd))
    entry.start_task(_produce, entry, cfg, devices, fd)


async def _produce(entry, cfg: AckLogConfig, devices, fd) -> None:
    n = 0
    while not cfg.limit or n < cfg.limit:
        n += 1
        now = entry.clock()
        for d in devices:
            v = float(n) if cfg.value is None else cfg.value
            stamped = await entry.publish(Batch(d, cfg.points, [v] * len(cfg.points), [now] * len(cfg.points)))
            os.write(fd, f"{d} {stamped.seq} {len(stamped)}\n".encode())
        if cfg.interval:
            await trio.sleep(cfg.interval)
        else:
            await trio.lowlevel.checkpoint()
