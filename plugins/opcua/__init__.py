"""OPC UA adapter: subscriptions (server push) through asyncua on the core's asyncio island.

The session (session.py) lives on the island; this module is the trio side:
it sets the entry up, turns notification bursts into batches, and supervises
the link so it never goes silent: a dead session is re-established with every
subscription re-created, the outage is marked with bad-quality readings, and
a subscription that stops delivering while the server is up is re-created.
"""

from __future__ import annotations

import datetime
import logging
from pathlib import Path
from typing import Any

import trio

from sitegate.aio import AsyncioIsland, Inbox
from sitegate.errors import EntryError, EntryNotReady
from sitegate.hookspecs import hookimpl
from sitegate.model import Batch, Command, CommandResult, DeviceInfo, PointInfo, Quality, Severity

from .config import OpcuaConfig
from .session import Session

log = logging.getLogger(__name__)


@hookimpl
def config_schema() -> type:
    return OpcuaConfig


async def _island(entry, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    async with AsyncioIsland(f"opcua-{entry.id}") as island:
        task_status.started(island)
        await trio.sleep_forever()


def _plain(value: Any) -> Any:
    # Readings carry JSON-able values; OPC UA also has dates, texts, byte strings, structures.
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, datetime.datetime):
        return value.timestamp()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    text = getattr(value, "Text", None)
    return text if isinstance(text, str) else str(value)


@hookimpl
async def setup_entry(entry) -> None:
    cfg: OpcuaConfig = entry.config
    island: AsyncioIsland = await entry.start(_island, entry)
    inbox: Inbox = Inbox(limit=500_000)
    base = Path(entry.host.loaded.path).parent
    session = Session(cfg, base, inbox.put)
    device = entry.device_name(cfg.device or None)
    counters = {"reconnects": 0, "resubscribed": 0, "status_changes": 0, "outages": 0}
    entry.data.update(island=island, session=session, inbox=inbox, device=device, counters=counters, online=False)
    entry.declare_device(DeviceInfo(device, entry.id, name=cfg.endpoint, model="OPC UA server", points=tuple(
        PointInfo(p.name, unit=p.unit, writable=p.writable, description=p.node or p.path) for p in cfg.points)))
    try:
        with trio.fail_after(float(cfg.timeout) * 3):
            await island.call(session.connect)
    except trio.TooSlowError:
        raise EntryNotReady(f"{cfg.endpoint}: no answer within {float(cfg.timeout) * 3:g} s") from None
    except (EntryError, EntryNotReady):
        raise
    except (OSError, ConnectionError, TimeoutError) as exc:
        raise EntryNotReady(f"cannot reach {cfg.endpoint}: {exc or type(exc).__name__}") from None
    entry.data["online"] = True
    entry.start_task(_pump, entry, name=f"{entry.id}:notifications")
    entry.start_task(_supervise, entry, name=f"{entry.id}:supervise")
    if cfg.mode == "poll":
        entry.start_task(_poll, entry, name=f"{entry.id}:poll")


async def _pump(entry) -> None:
    inbox: Inbox = entry.data["inbox"]
    device = entry.data["device"]
    counters = entry.data["counters"]
    while True:
        items = await inbox.get_batch()
        points, values, stamps, quality = [], [], [], []
        for point, value, ts, q in items:
            if point == "__status__":
                counters["status_changes"] += 1
                continue
            points.append(point)
            values.append(_plain(value))
            stamps.append(ts)
            quality.append(q)
        if points:
            await entry.publish(Batch(device, points, values, stamps, quality if any(quality) else None, entry.id))


async def _poll(entry) -> None:
    cfg: OpcuaConfig = entry.config
    island, session, device = entry.data["island"], entry.data["session"], entry.data["device"]
    deadline = trio.current_time()
    while True:
        deadline += float(cfg.poll_interval)
        await trio.sleep_until(deadline)
        if not entry.data["online"]:
            continue
        try:
            with trio.fail_after(float(cfg.timeout)):
                rows = await island.call(session.read_all)
        except Exception:  # noqa: BLE001 - the supervisor handles the link
            continue
        q = [r[3] for r in rows]
        await entry.publish(Batch(device, [r[0] for r in rows], [_plain(r[1]) for r in rows], [r[2] for r in rows],
                                  q if any(q) else None, entry.id))


async def _mark_outage(entry, reason: str) -> None:
    """Make the gap visible: every point gets a bad-quality reading, and the device is offline."""
    device, cfg = entry.data["device"], entry.config
    names = [p.name for p in cfg.points]
    now = entry.clock()
    await entry.publish(Batch(device, names, [None] * len(names), [now] * len(names),
                              [int(Quality.BAD_COMM)] * len(names), entry.id))
    entry.emit("device.offline", device=device, severity=Severity.WARNING,
               message=f"{cfg.endpoint}: {reason}", reason=reason)


async def _supervise(entry) -> None:
    cfg: OpcuaConfig = entry.config
    island, session, counters = entry.data["island"], entry.data["session"], entry.data["counters"]
    device = entry.data["device"]
    while True:
        await trio.sleep(float(cfg.liveness))
        try:
            with trio.fail_after(float(cfg.timeout) * 2):
                stopped = await island.call(session.check)
            if stopped:
                counters["resubscribed"] += 1
                entry.log.warning("subscription stopped delivering (%s); re-creating it", stopped)
                entry.emit("opcua.resubscribed", device=device, severity=Severity.WARNING, message=stopped)
                with trio.fail_after(float(cfg.timeout) * 2):
                    await island.call(session.subscribe)
            continue
        except Exception as exc:  # noqa: BLE001 - anything here means the link is gone
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        counters["outages"] += 1
        entry.data["online"] = False
        entry.log.warning("lost %s (%s); reconnecting", cfg.endpoint, reason)
        await _mark_outage(entry, reason)
        with trio.move_on_after(float(cfg.timeout)):
            await island.call(session.close)
        delay = 0.5
        while True:
            try:
                with trio.fail_after(float(cfg.timeout) * 3):
                    await island.call(session.connect)
                break
            except EntryError as exc:   # e.g. the certificate changed: retrying will not help
                entry.log.error("cannot re-establish the session: %s", exc)
                raise
            except Exception as exc:  # noqa: BLE001
                with trio.move_on_after(float(cfg.timeout)):
                    await island.call(session.close)
                await _mark_outage(entry, f"reconnect failed: {type(exc).__name__}: {exc}")
                await trio.sleep(delay)
                delay = min(delay * 2, float(cfg.reconnect_max))
        counters["reconnects"] += 1
        entry.data["online"] = True
        entry.log.info("re-established %s; %d subscriptions re-created", cfg.endpoint, len(cfg.points))
        entry.emit("device.online", device=device, message=f"{cfg.endpoint}: session re-established")


@hookimpl
async def unload_entry(entry) -> None:
    island, session = entry.data.get("island"), entry.data.get("session")
    if island is not None and session is not None:
        with trio.move_on_after(3):
            await island.call(session.close)


@hookimpl
async def adapter_command(entry, command: Command) -> CommandResult:
    cfg: OpcuaConfig = entry.config
    island, session = entry.data["island"], entry.data["session"]
    if command.device != entry.data["device"]:
        return CommandResult("nack", f"no device {command.device!r} in entry {entry.id!r}")
    if not entry.data["online"]:
        return CommandResult("nack", f"{cfg.endpoint} is not connected")
    if command.action == "write":
        point = next((p for p in cfg.points if p.name == command.point), None)
        if point is None:
            return CommandResult("nack", f"no point {command.point!r}")
        if not point.writable:
            return CommandResult("nack", f"point {command.point!r} is not writable (writable: false)")
        try:
            with trio.fail_after(command.timeout):
                status = await island.call(session.write, command.point, command.value)
        except trio.TooSlowError:
            return CommandResult("timeout", f"no answer within {command.timeout:g} s")
        return CommandResult("ack", status, command.value) if status == "Good" else CommandResult("nack", status)
    if command.action == "call":
        obj, method = command.args.get("object"), command.args.get("method")
        if not obj or not method:
            return CommandResult("nack", "call needs args.object and args.method (node ids)")
        try:
            with trio.fail_after(command.timeout):
                result = await island.call(session.call, obj, method, list(command.args.get("inputs", [])))
        except trio.TooSlowError:
            return CommandResult("timeout", f"no answer within {command.timeout:g} s")
        except Exception as exc:  # noqa: BLE001 - the server's status code is the answer
            return CommandResult("nack", f"{type(exc).__name__}: {exc}")
        return CommandResult("ack", "Good", [_plain(v) for v in result])
    return CommandResult("nack", f"unknown action {command.action!r}; opcua understands 'write' and 'call'")


@hookimpl
def entry_diagnostics(entry) -> dict[str, Any]:
    session: Session | None = entry.data.get("session")
    inbox: Inbox | None = entry.data.get("inbox")
    return {
        "online": entry.data.get("online"),
        "counters": dict(entry.data.get("counters", {})),
        "notifications": session.notifications if session else 0,
        "subscribed_nodes": sorted(session.by_nodeid) if session else [],
        "inbox_dropped": inbox.dropped if inbox else 0,
    }


@hookimpl
def cli_commands():
    from sitegate.plugins import CliCommand

    from . import tools

    def browse_args(p):
        p.add_argument("endpoint", help="opc.tcp://host:port/path")
        p.add_argument("node", nargs="?", help="node id to start from (default: Objects)")
        p.add_argument("--depth", type=int, default=3, help="levels to descend (default 3)")

    def browse(args) -> int:
        try:
            rows = tools.browse(args.endpoint, args.node, args.depth)
        except Exception as exc:  # noqa: BLE001 - show the user what went wrong, not a traceback
            print(f"error: cannot browse {args.endpoint}: {type(exc).__name__}: {exc}")
            return 1
        for depth, name, node_id, cls in rows:
            print(f"{'  ' * depth}{name:<{40 - 2 * depth}} {node_id:<32} {cls}")
        return 0

    def cert_args(p):
        p.add_argument("stem", help="path without suffix: writes STEM.der (certificate) and STEM.pem (key)")
        p.add_argument("--uri", default="urn:sitegate:client", help="application URI (default urn:sitegate:client)")
        p.add_argument("--host", default="127.0.0.1", help="host name in the certificate")

    def make_cert(args) -> int:
        cert, key = tools.make_certificate(args.stem, args.uri, args.host)
        print(f"certificate {cert}\nprivate key {key}\n"
              "Give the server's administrator the certificate to trust; keep the key private.")
        return 0

    return {"browse": CliCommand("browse", "list a server's address space to pick nodes", browse_args, browse),
            "make-cert": CliCommand("make-cert", "make a self-signed client certificate", cert_args, make_cert)}
