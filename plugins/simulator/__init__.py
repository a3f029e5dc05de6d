"""Simulated devices: N devices x M points of deterministic signals at a fixed rate.

The reference integration: the demo, the tests and the benchmarks use it, and
plugin authors copy its shape (a config class, setup_entry starting a task,
batches published through the entry, commands answered).
"""

from __future__ import annotations

from typing import Any

import attrs
import trio

from sitegate.hookspecs import hookimpl
from sitegate.model import Batch, Command, CommandResult, DeviceInfo, PointInfo
from sitegate.structure import Duration

from .signals import Signal, evaluator


@attrs.frozen
class SimulatorConfig:
    """Settings of one simulator entry."""

    config_version = 1

    devices: int = 1                  # how many devices ("<entry>.dev<N>")
    interval: Duration = Duration(1.0)   # seconds between samples of each device
    points: list[Signal] = attrs.Factory(lambda: [Signal("temperature"), Signal("counter", shape="counter")])
    seed: int = 0                     # with the device names, picks each device's phase, offset and noise
    fail_setup: bool = False          # for tests: setup raises "not ready"
    device_prefix: str = "dev"
    writable: bool = True             # accept `write` commands (the value then holds until the next sample)

    def __attrs_post_init__(self):
        if self.devices < 1:
            raise ValueError(f"devices: expected at least 1, got {self.devices}")
        if float(self.interval) <= 0:
            raise ValueError("interval: expected a positive duration")
        names = [p.name for p in self.points]
        if len(set(names)) != len(names):
            raise ValueError(f"points: duplicate point names in {names}")


@hookimpl
def config_schema() -> type:
    return SimulatorConfig


@hookimpl
async def setup_entry(entry) -> None:
    from sitegate.errors import EntryNotReady

    cfg: SimulatorConfig = entry.config
    if cfg.fail_setup:
        raise EntryNotReady("simulated device is not reachable (fail_setup: true)")
    overrides: dict[tuple[str, str], Any] = {}
    entry.data["overrides"] = overrides
    entry.data["silenced_until"] = {}   # device -> wall time: a device that stops answering
    entry.data["devices"] = [entry.device_name(f"{cfg.device_prefix}{i}") for i in range(cfg.devices)]
    points = tuple(PointInfo(p.name, unit=p.unit, datatype="int" if p.shape == "counter" else "float",
                             writable=cfg.writable) for p in cfg.points)
    for i, device in enumerate(entry.data["devices"]):
        entry.declare_device(DeviceInfo(device, entry.id, name=f"{entry.spec.name or entry.id} #{i}",
                                        model="sitegate simulator", manufacturer="sitegate",
                                        fw_version="1.0.0", points=points))
    entry.start_task(_produce, entry, cfg, overrides, name=f"{entry.id}:produce")


async def _produce(entry, cfg: SimulatorConfig, overrides: dict) -> None:
    devices = entry.data["devices"]
    names = [p.name for p in cfg.points]
    # Each device its own phase, offset, noise and counter start (from its name): built once, so a
    # tick costs what it did when every device shared one set.
    fns = [(device, [evaluator(p, cfg.seed + i, device) for i, p in enumerate(cfg.points)]) for device in devices]
    interval = float(cfg.interval)
    next_tick = trio.current_time()
    while True:
        now = entry.clock()
        stamps = [now] * len(names)
        batches = []
        silenced = entry.data["silenced_until"]
        for device, device_fns in fns:
            if silenced and silenced.get(device, 0) > now:
                continue
            values = [f(now) for f in device_fns]
            if overrides:
                for i, name in enumerate(names):
                    v = overrides.get((device, name))
                    if v is not None:
                        values[i] = v
            batches.append(Batch(device, names, values, stamps, None, entry.id))
        await entry.publish_many(batches)
        next_tick += interval
        await trio.sleep_until(next_tick)


@hookimpl
async def adapter_command(entry, command: Command) -> CommandResult:
    cfg: SimulatorConfig = entry.config
    if command.device not in entry.data.get("devices", ()):
        return CommandResult("nack", f"no device {command.device!r} in entry {entry.id!r}")
    if command.action == "silence":
        # The device stops answering for `seconds` (default: until told otherwise), its entry stays up.
        seconds = float(command.args.get("seconds", 1e9))
        entry.data["silenced_until"][command.device] = entry.clock() + seconds
        return CommandResult("ack", value=seconds)
    if command.action != "write":
        return CommandResult("nack", f"unknown action {command.action!r}; the simulator understands "
                                     "'write' and 'silence'")
    if not cfg.writable:
        return CommandResult("nack", "points are read-only (writable: false)")
    if command.point not in {p.name for p in cfg.points}:
        return CommandResult("nack", f"no point {command.point!r}")
    entry.data["overrides"][(command.device, command.point)] = command.value
    await trio.lowlevel.checkpoint()
    return CommandResult("ack", value=command.value)


@hookimpl
def entry_diagnostics(entry) -> dict[str, Any]:
    return {"devices": entry.data.get("devices", []),
            "overrides": {f"{d}/{p}": v for (d, p), v in entry.data.get("overrides", {}).items()}}
