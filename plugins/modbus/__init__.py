"""Modbus adapter: polls PLCs, meters and RS-485 sensors over Modbus TCP, RTU and RTU over TCP.

Wiring only: `config.py` is the entry config, `poller.py` polls and writes,
`client.py` speaks the protocol, `registermap.py` decodes. One entry is one
link (a TCP host or a serial line) with one or more unit ids behind it.
"""

from __future__ import annotations

from typing import Any

from sitegate.hookspecs import hookimpl
from sitegate.model import Command, CommandResult, DeviceInfo, PointInfo

from .client import ModbusConnectionError, ModbusTimeout
from .config import ModbusConfig
from .poller import LinkPoller


@hookimpl
def config_schema() -> type:
    return ModbusConfig


@hookimpl
async def setup_entry(entry) -> None:
    from sitegate.errors import EntryNotReady

    cfg: ModbusConfig = entry.config
    devices = [(entry.device_name(d.name), d) for d in cfg.device_configs()]
    poller = LinkPoller(
        cfg.endpoint(), devices, entry.publish, timeout=float(cfg.timeout),
        connect_timeout=float(cfg.connect_timeout), offline_after=cfg.offline_after,
        reconnect_min=float(cfg.reconnect_min), reconnect_max=float(cfg.reconnect_max),
        emit=entry.emit, clock=entry.clock, source=entry.id)
    try:
        await poller.connect()
    except ModbusConnectionError as exc:
        raise EntryNotReady(str(exc)) from None
    entry.data["poller"] = poller
    entry.on_unload(poller.aclose)
    for name, d in devices:
        entry.declare_device(DeviceInfo(
            name, entry.id, name=d.name or entry.spec.name or entry.id, model=d.model, manufacturer=d.manufacturer,
            points=tuple(PointInfo(p.name, unit=p.unit, datatype=p.datatype, writable=p.writable,
                                   description=p.description) for p in d.points)))
    await entry.start(poller.run, name=f"{entry.id}:poll")


@hookimpl
async def adapter_command(entry, command: Command) -> CommandResult:
    poller: LinkPoller | None = entry.data.get("poller")
    if poller is None:
        return CommandResult("nack", f"entry {entry.id!r} is not connected")
    if command.action == "write":
        if command.point is None:
            return CommandResult("nack", "write needs a point")
        verify = bool(command.args.get("verify", False))
        return await poller.write(command.device, command.point, command.value, verify=verify,
                                  timeout=min(command.timeout, float(entry.config.timeout)))
    if command.action == "read":
        return await _read(poller, command)
    return CommandResult("nack", f"unknown action {command.action!r}; the modbus adapter understands write and read")


async def _read(poller: LinkPoller, command: Command) -> CommandResult:
    """Read one device now (all its points, or the one named) and answer with the values."""
    dev = poller.devices.get(command.device)
    if dev is None:
        return CommandResult("nack", f"no device {command.device!r}")
    requests = [r for _, reqs in dev.groups for r in reqs
                if command.point is None or any(p.name == command.point for p, _ in r.points)]
    if not requests:
        return CommandResult("nack", f"device {command.device!r} has no point {command.point!r}")
    names, values, _, quality, _, error = await poller.read_now(dev, requests)
    got = {n: v for n, v in zip(names, values) if command.point in (None, n)}
    bad = [n for n, q in zip(names, quality) if q >= 0x80 and command.point in (None, n)]
    if bad:
        if error is not None and isinstance(error, ModbusTimeout):
            return CommandResult("timeout", error.reason, got)
        return CommandResult("nack", f"{', '.join(bad)}: {dev.last_error}", got)
    return CommandResult("ack", value=got if command.point is None else got[command.point])


@hookimpl
def entry_diagnostics(entry) -> dict[str, Any]:
    poller: LinkPoller | None = entry.data.get("poller")
    return poller.diagnostics() if poller is not None else {"connected": False}


@hookimpl
def entry_metrics(entry) -> dict[str, float]:
    poller: LinkPoller | None = entry.data.get("poller")
    if poller is None:
        return {}
    out = {"poll_lateness_p50_seconds": poller.lateness.percentile(50),
           "poll_lateness_p99_seconds": poller.lateness.percentile(99),
           "devices_online": sum(1 for d in poller.devices.values() if d.online),
           "devices_offline": sum(1 for d in poller.devices.values() if not d.online)}
    for key, value in poller.counters.items():
        if isinstance(value, (int, float)):
            out[f"{key}_total"] = value
    return out
