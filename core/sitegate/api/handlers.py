"""What each WebSocket command does, on the running SiteHost.

One coroutine per command in messages.COMMANDS: it gets the validated fields
and returns the `result` (JSON-able) or raises ApiError(code, message). Role
checks happen before (server.py); audit of device commands happens here.
"""

from __future__ import annotations

import inspect
import time
from typing import TYPE_CHECKING, Any, Awaitable, Callable

import attrs
import trio

from .. import __version__
from ..config.masking import mask_secrets
from ..entries import EntryState
from ..host import write_refusal
from ..model import Command
from . import messages as m

if TYPE_CHECKING:  # pragma: no cover
    from .connection import Connection
    from .server import ApiServer


class ApiError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


Handler = Callable[["ApiServer", "Connection", int, Any], Awaitable[Any]]
HANDLERS: dict[str, Handler] = {}


def handles(name: str):
    def wrap(fn: Handler) -> Handler:
        assert name in m.COMMANDS, name
        HANDLERS[name] = fn
        return fn
    return wrap


def _runner(server: "ApiServer", entry_id: str):
    runner = server.host.runners.get(entry_id)
    if runner is None:
        raise ApiError("not_found", f"no entry {entry_id!r}; entries: {', '.join(server.host.runners) or 'none'}")
    return runner


def _twins(server: "ApiServer"):
    twins = server.host.services.get("twins")
    if twins is None:
        raise ApiError("not_found", "the device registry (twins) is not running on this site")
    return twins


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


@handles("get_site")
async def get_site(server, conn, mid, args):
    host = server.host
    return {"site": host.name, "version": __version__, "uptime": round(time.time() - host.started_at, 3),
            "entries": len(host.runners), "devices": len(host.devices.devices),
            "readings_in": host.pipeline.readings_in, "batches_in": host.pipeline.batches_in,
            "role": conn.role, "token": conn.token.name,
            "sinks": server.sink_states(), "dataplane": server.dataplane_status(),
            "connections": len(server.connections)}


@handles("get_entries")
async def get_entries(server, conn, mid, args):
    return _jsonable(server.host.entries())


async def _state_after(server, entry_id: str) -> dict[str, Any]:
    runner = server.host.runners.get(entry_id)
    return runner.ctx.describe() if runner else {"id": entry_id, "state": "not_loaded"}


@handles("reload_entry")
async def reload_entry(server, conn, mid, args: m.ReloadEntry):
    _runner(server, args.entry_id)
    await server.host.reload_entry(args.entry_id)
    return _jsonable(await _state_after(server, args.entry_id))


@handles("unload_entry")
async def unload_entry(server, conn, mid, args: m.UnloadEntry):
    runner = _runner(server, args.entry_id)
    if runner.ctx.state is EntryState.NOT_LOADED:
        raise ApiError("not_allowed", f"entry {args.entry_id!r} is not loaded")
    await server.host.unload_entry(args.entry_id)
    return _jsonable(await _state_after(server, args.entry_id))


@handles("setup_entry")
async def setup_entry(server, conn, mid, args: m.SetupEntry):
    runner = _runner(server, args.entry_id)
    if runner.ctx.state in (EntryState.LOADED, EntryState.SETUP_IN_PROGRESS):
        raise ApiError("not_allowed", f"entry {args.entry_id!r} is {runner.ctx.state}; use reload_entry")
    await server.host.reload_entry(args.entry_id)
    return _jsonable(await _state_after(server, args.entry_id))


@handles("list_devices")
async def list_devices(server, conn, mid, args: m.ListDevices):
    return _jsonable(_twins(server).list(args.entry_id))


@handles("get_device")
async def get_device(server, conn, mid, args: m.GetDevice):
    twin = _twins(server).get(args.device_id)
    if twin is None:
        raise ApiError("not_found", f"no device {args.device_id!r}")
    return _jsonable(twin)


@handles("set_desired_config")
async def set_desired_config(server, conn, mid, args: m.SetDesiredConfig):
    twins = _twins(server)
    if args.device_id not in twins.twins:
        raise ApiError("not_found", f"no device {args.device_id!r}")
    twin = twins.set_desired(args.device_id, args.version).to_json()
    return {k: twin[k] for k in ("desired_config", "reported_config", "drift")}


@handles("device_command")
async def device_command(server, conn, mid, args: m.DeviceCommand):
    host = server.host
    info = host.devices.devices.get(args.device_id)
    if info is None:
        raise ApiError("not_found", f"no device {args.device_id!r} declared by any entry")
    if args.action == "write" and args.point is not None:
        point = host.devices.point(args.device_id, args.point)
        if point is None:
            raise ApiError("not_found", f"device {args.device_id!r} has no point {args.point!r}")
        refusal = write_refusal(point, args.value)
        if refusal:
            raise ApiError("not_allowed" if not point.writable else "invalid_format",
                           f"{args.device_id}/{args.point} {refusal}")
    cmd = Command(args.device_id, args.action, args.point, args.value, dict(args.args), args.timeout,
                  issued_by=f"api:{conn.token.name}")
    result = await host.command(info.entry, cmd)
    twins = host.services.get("twins")
    if twins is not None:
        await twins.audit(conn.token.name, conn.role, args.device_id, args.action, args.point, args.value,
                          result.status, result.detail)
    if result.status == "timeout":
        raise ApiError("timeout", f"{args.device_id}: {result.detail}")
    if not result.ok:
        raise ApiError("nack", f"{args.device_id} refused {args.action}: {result.detail}")
    return {"status": result.status, "detail": result.detail, "value": _jsonable(result.value)}


@handles("subscribe_readings")
async def subscribe_readings(server, conn, mid, args: m.SubscribeReadings):
    conn.subscriptions[mid] = server.readings.subscribe(conn, mid, args.devices, args.points, args.max_rate)
    return None


@handles("subscribe_events")
async def subscribe_events(server, conn, mid, args: m.SubscribeEvents):
    conn.subscriptions[mid] = server.event_fanout.subscribe(conn, mid, args.kinds)
    return None


@handles("unsubscribe")
async def unsubscribe(server, conn, mid, args: m.Unsubscribe):
    remove = conn.subscriptions.pop(args.subscription, None)
    if remove is None:
        raise ApiError("not_found", f"no subscription {args.subscription} on this connection")
    remove()
    return None


def find_history(host, entry_id: str | None):
    """The history sink's query callable and its entry id, or None."""
    for runner in host.runners.values():
        ctx = runner.ctx
        if (entry_id and ctx.id != entry_id) or (not entry_id and ctx.domain != "history"):
            continue
        for obj in (ctx.data.get("history"), ctx.data.get("sink"), host.sinks.get(ctx.id), ctx.data.get("store")):
            query = getattr(obj, "query", None)
            if callable(query):
                return ctx.id, query
    return None


@handles("history")
async def history(server, conn, mid, args: m.History):
    found = find_history(server.host, args.entry_id)
    if found is None:
        which = f"entry {args.entry_id!r}" if args.entry_id else "no `history` entry"
        raise ApiError("not_found", f"no history to query: {which} is loaded with a query API on this site")
    entry_id, query = found
    end = args.end if args.end is not None else time.time()
    start = args.start if args.start is not None else end - 3600
    if start > end:
        raise ApiError("invalid_format", f"history: start ({start}) is after end ({end})")
    rows = query(args.device_id, args.point, start, end, args.resolution)
    if inspect.isawaitable(rows):
        with trio.move_on_after(30) as cs:
            rows = await rows
        if cs.cancelled_caught:
            raise ApiError("timeout", f"history entry {entry_id!r} did not answer within 30 s")
    return {"entry": entry_id, "device_id": args.device_id, "point": args.point, "start": start, "end": end,
            "rows": _jsonable(rows)}


@handles("diagnostics")
async def diagnostics(server, conn, mid, args: m.Diagnostics):
    host = server.host
    entries: dict[str, Any] = {}
    for entry_id, runner in host.runners.items():
        if args.entry_id and entry_id != args.entry_id:
            continue
        ctx = runner.ctx
        info: dict[str, Any] = dict(ctx.describe())
        hook = ctx.integration.hook("entry_diagnostics")
        if hook is not None and ctx.state is EntryState.LOADED:
            try:
                info["diagnostics"] = hook(entry=ctx)
            except Exception as exc:  # noqa: BLE001 - a plugin's diagnostics may fail; say so
                info["diagnostics_error"] = f"{type(exc).__name__}: {exc}"
        spec = next((e for e in host.loaded.raw.get("entries", []) if e.get("id") == entry_id), None)
        info["config"] = spec.get("config") if isinstance(spec, dict) else None
        entries[entry_id] = info
    if args.entry_id and not entries:
        raise ApiError("not_found", f"no entry {args.entry_id!r}")
    bundle = {"site": host.name, "version": __version__, "generated_at": time.time(), "entries": entries}
    if not args.entry_id:
        twins = host.services.get("twins")
        bundle.update(api=server.describe(), sinks=server.sink_states(),
                      devices=twins.list() if twins else [], recent_events=[e.to_json() for e in
                                                                            list(host.events.recent)[-50:]])
    return mask_secrets(_jsonable(bundle), host.loaded.secrets)


@handles("list_plugins")
async def list_plugins(server, conn, mid, args):
    host = server.host
    out = []
    for domain, integ in sorted(host.loader.loaded.items()):
        man = getattr(integ, "manifest", None)
        if man is None:
            continue
        out.append({"domain": domain, "name": man.name, "version": man.version, "kinds": list(man.kinds),
                    "verified": bool(getattr(host.source, "verified", False)),
                    "entries": [r.ctx.id for r in host.runners.values() if r.ctx.domain == domain]})
    return out


async def _plugin_change(server, conn, action: str, domain: str, **kw):
    from ..errors import SitegateError
    if domain not in server.host.loader.loaded:
        raise ApiError("not_found", f"no integration {domain!r} is loaded on this site")
    try:
        result = await getattr(server.host, action)(domain, actor=f"api:{conn.token.name}", **kw)
    except SitegateError as exc:
        raise ApiError("not_allowed", str(exc)) from None
    return _jsonable(attrs.asdict(result))


@handles("upgrade_plugin")
async def upgrade_plugin(server, conn, mid, args: m.UpgradePlugin):
    return await _plugin_change(server, conn, "upgrade_plugin", args.domain, spec=args.spec)


@handles("rollback_plugin")
async def rollback_plugin(server, conn, mid, args: m.RollbackPlugin):
    return await _plugin_change(server, conn, "rollback_plugin", args.domain)


def _rollouts(server):
    engine = server.host.services.get("rollouts")
    if engine is None:
        raise ApiError("not_found", "this site runs no rollout engine")
    return engine


@handles("rollout_status")
async def rollout_status(server, conn, mid, args: m.RolloutStatus):
    rows = _rollouts(server).status(args.rollout_id)
    if args.rollout_id and not rows:
        raise ApiError("not_found", f"no rollout {args.rollout_id!r}")
    return _jsonable(rows)


@handles("rollout_start")
async def rollout_start(server, conn, mid, args: m.RolloutStart):
    from ..errors import ConfigError
    from ..structure import structure
    from ..updates.policy import RolloutPolicy
    engine = _rollouts(server)
    host = server.host
    if args.entry_id not in host.runners:
        raise ApiError("not_found", f"no entry {args.entry_id!r}")
    registry = getattr(host.source, "registry_dir", None)
    if registry is None:
        raise ApiError("not_allowed", "rollouts through the API need the signed registry as plugin source")
    try:
        policy = structure(args.policy, RolloutPolicy, path="policy")
    except ConfigError as exc:
        raise ApiError("invalid_format", str(exc)) from None

    def fetch():
        from ..registry.client import TrustedIndex
        from ..registry.updates import fetch_update
        return fetch_update(TrustedIndex(registry, host.state_dir / "plugins" / "trust"), args.target)

    try:
        artifact = await trio.to_thread.run_sync(fetch)
    except Exception as exc:  # noqa: BLE001 - refused or missing: say which and why
        raise ApiError("not_found", f"update {args.target!r}: {exc}") from None
    try:
        rid = engine.start(args.entry_id, artifact, policy=policy, devices=args.devices, hardware=args.hardware,
                           rollout_id=args.rollout_id)
    except ValueError as exc:
        raise ApiError("not_allowed", str(exc)) from None
    return {"rollout_id": rid}


async def _rollout_request(server, verb: str, rollout_id: str):
    try:
        return {"state": getattr(_rollouts(server), verb)(rollout_id)}
    except (KeyError, ValueError) as exc:
        raise ApiError("not_found" if "no rollout" in str(exc) else "not_allowed", str(exc).strip("'\"")) from None


@handles("rollout_pause")
async def rollout_pause(server, conn, mid, args: m.RolloutPause):
    return await _rollout_request(server, "pause", args.rollout_id)


@handles("rollout_resume")
async def rollout_resume(server, conn, mid, args: m.RolloutResume):
    return await _rollout_request(server, "resume", args.rollout_id)


@handles("rollout_abort")
async def rollout_abort(server, conn, mid, args: m.RolloutAbort):
    return await _rollout_request(server, "abort", args.rollout_id)


# --- dead letters: the same table and code as `sitegate dlq` (dataplane/deadletters.py) ----------

def _plane(server):
    plane = server.host.services.get("dataplane")
    if plane is None:
        raise ApiError("not_found", "this site runs no data plane (no dead-letter table)")
    return plane


def _selection(args):
    from ..dataplane.deadletters import Selection
    from ..errors import SitegateError
    try:
        return Selection(tuple(args.ids), args.entry_id, args.kind, args.all)
    except SitegateError as exc:
        raise ApiError("invalid_format", str(exc)) from None


def _which(args, verb: str):
    if not (args.ids or args.all or args.entry_id or args.kind):
        raise ApiError("invalid_format", f"{verb}: say which dead letters: ids, all, entry_id or kind")
    return _selection(args)


@handles("list_dead_letters")
async def list_dead_letters(server, conn, mid, args: m.ListDeadLetters):
    from ..dataplane.deadletters import Selection
    plane = _plane(server)
    rows = await plane.list_dead_letters(Selection(entry=args.entry_id, kind=args.kind), after=args.after_id,
                                         limit=args.limit + 1)
    return _jsonable({"dead_letters": rows[:args.limit], "more": len(rows) > args.limit,
                      "stored": dict(plane.dead_letters)})


@handles("get_dead_letter")
async def get_dead_letter(server, conn, mid, args: m.GetDeadLetter):
    from ..errors import SitegateError
    try:
        return _jsonable(await _plane(server).show_dead_letter(args.dead_letter_id))
    except SitegateError as exc:
        raise ApiError("not_found", str(exc)) from None


@handles("replay_dead_letters")
async def replay_dead_letters(server, conn, mid, args: m.ReplayDeadLetters):
    return _jsonable(await _plane(server).replay_dead_letters(_which(args, "replay_dead_letters")))


@handles("purge_dead_letters")
async def purge_dead_letters(server, conn, mid, args: m.PurgeDeadLetters):
    plane = _plane(server)
    gone = await plane.purge_dead_letters(_which(args, "purge_dead_letters"))
    return {"purged": gone, "stored": dict(plane.dead_letters)}
