"""MQTT-SN gateway integration: battery sensor nodes on UDP publish, sleep, wake and take commands.

The entry runs one Gateway (gateway.py) in its nursery; publishes become readings
through payload.py rules and reach the pipeline through the entry, so QoS 1/2 are
acknowledged only once the pipeline has them. Config: config.py; wire format: codec.py.
"""

from __future__ import annotations

import json
from typing import Any

import trio

from sitegate.hookspecs import hookimpl
from sitegate.model import Command, CommandResult, DeviceInfo, PointInfo, Severity
from sitegate.payloads import MalformedPayload

from .config import GatewayConfig
from .gateway import Gateway


@hookimpl
def config_schema() -> type:
    return GatewayConfig


@hookimpl
async def setup_entry(entry) -> None:
    from sitegate.errors import EntryNotReady

    cfg: GatewayConfig = entry.config
    pipeline = entry.host.pipeline
    # Devices and the points seen from them, declared to the site as they appear (bounded
    # like the sessions: a flood of client ids cannot grow the device directory for ever).
    points_seen: dict[str, dict[str, PointInfo]] = {}

    def declare(device: str, name: str, new_points: dict[str, PointInfo]) -> None:
        if device not in points_seen and len(points_seen) >= 4 * cfg.max_sessions:
            return
        known = points_seen.setdefault(device, {})
        known.update(new_points)
        entry.declare_device(DeviceInfo(device, entry.id, name=name, model="MQTT-SN node",
                                        points=tuple(known.values())))

    async def publish(batches) -> None:
        for b in batches:
            known = points_seen.get(b.device)
            if known is None or any(p not in known for p in b.points):
                new = {p: PointInfo(p, datatype=_datatype(v)) for p, v in zip(b.points, b.values)
                       if known is None or p not in known}
                declare(b.device, b.device[len(entry.id) + 1:], new)
        await entry.publish_many(batches)

    async def deliver(batches) -> bool:
        # Saturated pipeline: the gateway answers QoS 1/2 with "rejected: congestion".
        if pipeline.saturated():
            return False
        await publish(batches)
        return True

    async def redecode(letters) -> list[str | None]:
        # `sitegate dlq replay`: the stored payloads through the rules the gateway has now, at the
        # time they arrived, from the client that sent them (kept as the dead letter's context).
        results: list[str | None] = []
        batches = []
        for dl in letters:
            if not dl.context:
                results.append(f"{dl.source}: stored without its client id, cannot be decoded again")
                continue
            try:
                batch = gw.mapper.decode(dl.source, dl.payload, dl.context, dl.received_at)
            except MalformedPayload as exc:
                results.append(f"{exc} (client {dl.context!r})")
                continue
            results.append(None)
            if batch is not None and len(batch):     # None: `unmapped: drop` drops its topic now
                batches.append(batch)
        if batches:
            await publish(batches)
        return results

    def on_event(kind: str, **data: Any) -> None:
        client = data.get("client")
        device = entry.device_name(client) if client else None
        if kind == "client.connected" and device not in points_seen:
            declare(device, client, {})
        if kind == "client.lost":
            entry.emit("mqttsn.client_lost", device=device, severity=Severity.WARNING,
                       message=f"MQTT-SN client {client!r} stopped answering (keep-alive or sleep timer ran out)")

    gw = Gateway(cfg, deliver, device_prefix=f"{entry.id}.", source=entry.id, on_event=on_event,
                 clock=entry.clock, dead_letter=entry.dead_letter, dead_letters_committed=entry.dead_letters_committed)
    entry.data["gateway"] = gw
    entry.on_redecode(redecode)
    try:
        await entry.start(gw.serve, name=f"{entry.id}:gateway")
    except OSError as exc:
        raise EntryNotReady(f"cannot listen on udp {cfg.host}:{cfg.port}: {exc}") from exc


def _datatype(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    return "str"


def _payload(value: Any) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    return json.dumps(value).encode("utf-8")


@hookimpl
async def adapter_command(entry, command: Command) -> CommandResult:
    """`write` publishes the value on `command_topic` for the device's client; `publish` takes
    `topic`, `payload`, `qos` and `retain` in args. Ack once every subscribed client has it."""
    cfg: GatewayConfig = entry.config
    gw: Gateway | None = entry.data.get("gateway")
    if gw is None:
        return CommandResult("nack", "the gateway is not running")
    prefix = f"{entry.id}."
    if command.action == "write":
        if not command.device.startswith(prefix) or command.point is None:
            return CommandResult("nack", f"write needs a device of entry {entry.id!r} ('{prefix}<client id>') "
                                         "and a point")
        client = command.device[len(prefix):]
        topic = cfg.command_topic.format(device=client, point=command.point)
        qos, retain = cfg.command_qos, False
    elif command.action == "publish":
        topic = command.args.get("topic")
        if not isinstance(topic, str):
            return CommandResult("nack", "publish needs args.topic (a topic name)")
        qos = command.args.get("qos", cfg.command_qos)
        retain = bool(command.args.get("retain", False))
    else:
        return CommandResult("nack", f"unknown action {command.action!r}; the MQTT-SN gateway understands "
                                     "'write' and 'publish'")
    payload = _payload(command.value if command.action == "write" else command.args.get("payload", b""))
    outcome: dict[str, bool] = {}
    finished = trio.Event()
    expected = 0

    def on_done(client_id: str, ok: bool) -> None:
        outcome[client_id] = ok
        if len(outcome) >= expected:
            finished.set()

    try:
        expected = gw.send_to_topic(topic, payload, qos, retain=retain, on_done=on_done)
    except ValueError as exc:
        return CommandResult("nack", str(exc))
    if expected == 0:
        detail = "no client is subscribed to " + repr(topic)
        return CommandResult("ack", detail + " (retained for later subscribers)") if retain else \
            CommandResult("nack", detail)
    if len(outcome) < expected:
        # A little under the command's timeout, so the answer says why rather than the
        # core's generic "no answer" (the core cancels at exactly command.timeout).
        with trio.move_on_after(command.timeout * 0.9):
            await finished.wait()
    failed = sorted(cid for cid, ok in outcome.items() if not ok)
    if failed:
        return CommandResult("nack", f"given up for {', '.join(failed)} (no acknowledgement after retries)")
    if len(outcome) < expected:
        return CommandResult("timeout", f"{expected - len(outcome)} of {expected} client(s) have not acknowledged "
                                        f"{topic!r} yet (asleep or slow); the message stays buffered")
    return CommandResult("ack", value=expected)


@hookimpl
def entry_diagnostics(entry) -> dict[str, Any]:
    gw: Gateway | None = entry.data.get("gateway")
    return gw.diagnostics() if gw is not None else {}


@hookimpl
def entry_metrics(entry) -> dict[str, float]:
    gw: Gateway | None = entry.data.get("gateway")
    if gw is None:
        return {}
    from .gateway import State
    out: dict[str, float] = {"sessions": len(gw.sessions)}
    for state in State:
        out[f"sessions_{state.name.lower()}"] = 0
    for session in gw.sessions.values():
        out[f"sessions_{session.state.name.lower()}"] += 1
    for key, value in gw.stats.items():
        out[f"{key}_total"] = value
    return out
