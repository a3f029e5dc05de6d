"""The running site: integrations loaded, entries supervised, changes applied live.

`SiteHost` owns the site's nursery. Each entry gets an EntryRunner (entries.py)
in its own cancel scope; applying a changed site file reloads only the
entries whose config changed. The pipeline (pipeline.py) and event bus
(events.py) are shared by all entries.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable

import attrs
import trio

from .config import LoadedSite
from .config.changes import Changes, applied_state, plan_changes, state_dir_for
from .config.validate import entry_references, named_entries
from .dataplane import start_dataplane
from .entries import EntryContext, EntryRunner, EntryState
from .errors import ConfigError, EntryError, MigrationError, PluginLoadError, SitegateError
from .events import EventBus
from .loader import Integration, Loader, PluginSource
from .model import Command, CommandResult, DeviceInfo, Event, PointInfo, Severity
from .pipeline import Pipeline
from .watchdog import LoopWatchdog

log = logging.getLogger(__name__)


class SiteHost:
    def __init__(self, loaded: LoadedSite, source: PluginSource, *, clock: Callable[[], float] = time.time):
        self.loaded = loaded
        self.source = source
        self.clock = clock
        self.name = loaded.site.site
        self.state_dir = state_dir_for(loaded)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.events = EventBus()
        self.pipeline = Pipeline(self.name)
        self.loader = Loader(source)
        self.runners: dict[str, EntryRunner] = {}
        self.sinks: dict[str, Any] = {}
        self.devices = DeviceDirectory(self.events)
        self.watchdog = LoopWatchdog(float(loaded.site.runtime.watchdog_threshold), self.events.emit)
        self._nursery: trio.Nursery | None = None
        self._applied: dict[str, Any] | None = None
        self._apply_lock = trio.Lock()
        self.started_at = time.time()
        self.on_apply: list[Callable[["SiteHost"], Any]] = []   # data plane / API rebuild routes etc.
        self.services: dict[str, Any] = {}                      # core services (wal, api, ...) by name

    # --- sinks (the data plane attaches delivery to these) ----------------------
    def attach_sink(self, ctx: EntryContext, sink: Any) -> None:
        self.sinks[ctx.id] = sink
        self.events.emit(Event("sink.attached", ctx.id, data={"entry": ctx.id}))

    def detach_sink(self, ctx: EntryContext) -> None:
        if self.sinks.pop(ctx.id, None) is not None:
            self.events.emit(Event("sink.detached", ctx.id, data={"entry": ctx.id}))

    # --- running ----------------------------------------------------------------
    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Run the site until cancelled; `started` once every entry has had its first setup attempt."""
        trio.lowlevel.add_instrument(self.watchdog)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                # The data plane (WAL, routes, delivery) comes first: nothing may be published before
                # the WAL has seeded the sequence numbers.
                await start_dataplane(self, nursery)
                await self.apply(self.loaded)
                task_status.started(self)
        finally:
            try:
                trio.lowlevel.remove_instrument(self.watchdog)
            except KeyError:
                pass

    def _load_integrations(self, domains: set[str]) -> dict[str, Integration | PluginLoadError]:
        # The signed registry refuses a plugin with a reason (failed check); say that, not "unknown domain".
        refused = getattr(self.source, "refused", None) or {}
        out: dict[str, Integration | PluginLoadError] = {
            d: PluginLoadError(d, f"refused by the signed registry: {refused[d]}") for d in domains if d in refused}
        order = self.loader.plan([d for d in domains if d not in refused])   # cycles / missing deps: refuse now
        for domain in order:
            try:
                out[domain] = self.loader.load_one(domain)
            except (PluginLoadError, ConfigError) as exc:
                err = exc if isinstance(exc, PluginLoadError) else PluginLoadError(domain, str(exc))
                log.error("%s", err)
                out[domain] = err
        return out

    async def apply(self, loaded: LoadedSite) -> dict[str, list[str]]:
        """Make the running site match `loaded`: add, remove and reload only what changed."""
        async with self._apply_lock:
            site = loaded.site
            changes = self._with_dependents(plan_changes(self._applied, site), site)
            specs = {e.id: e for e in site.entries}
            wanted = {e.domain for e in site.entries if not e.disabled}
            # Verifying and installing from the registry is file and hash work, and importing an
            # integration (and what it imports: pymodbus, asyncua, ...) takes up to a second of
            # CPU: both off the event loop, which keeps serving the API and running entries.
            # Applies are serialised (the lock above), so the loader is only used from one thread.
            await trio.to_thread.run_sync(self.source.available)
            integrations = await trio.to_thread.run_sync(self._load_integrations, wanted)
            # Stop what goes away or changes first, so a reloaded entry never runs twice.
            for entry_id in list(changes.removed) + list(changes.reloaded):
                await self._stop_entry(entry_id)
            self.loaded = loaded
            self.pipeline.site = self.name = site.site
            for entry_id in list(changes.added) + list(changes.reloaded):
                spec = specs[entry_id]
                if spec.disabled:
                    continue
                await self._start_entry(spec, integrations.get(spec.domain))
            self._applied = applied_state(site)
            for fn in self.on_apply:
                result = fn(self)
                if hasattr(result, "__await__"):
                    await result
            self._write_applied()
            summary = {"added": list(changes.added), "removed": list(changes.removed),
                       "reloaded": list(changes.reloaded), "unchanged": list(changes.unchanged)}
            self.events.emit(Event("site.applied", "core", message=json.dumps(summary), data=summary))
            log.info("site %s applied: %s", site.site, ", ".join(f"{k} {len(v)}" for k, v in summary.items()))
            return summary

    def _with_dependents(self, changes: Changes, site: Any) -> Changes:
        """Also reload an unchanged entry whose config names another entry (names_entry) when that
        reference now fails (the named entry went away or changed domain: it must stop in
        setup_error, saying so), or when it is in setup_error and a named entry was just added or
        reloaded (it may be set up now). A healthy dependent is left running."""
        started = set(changes.added) | set(changes.reloaded)
        touched = started | set(changes.removed)
        if not touched:
            return changes
        again = []
        for entry_id in changes.unchanged:
            runner = self.runners.get(entry_id)
            names = named_entries(runner.ctx.config) if runner is not None else set()
            if not names & touched:
                continue
            broken = bool(entry_references(site, runner.ctx.config, ""))
            waiting = runner.ctx.state is EntryState.SETUP_ERROR and bool(names & started)
            if broken or waiting:
                again.append(entry_id)
        if not again:
            return changes
        return attrs.evolve(changes, reloaded=changes.reloaded + tuple(again),
                            unchanged=tuple(e for e in changes.unchanged if e not in again))

    def claim_state(self) -> None:
        """Hold the state folder for this process (an exclusive lock on `site.lock`, released when the
        process ends), so a second `sitegate run` of the same site cannot share its WAL, twins and
        runtime.json; raises SitegateError naming the process that holds it."""
        import fcntl
        path = self.state_dir / "site.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise SitegateError(f"{self.state_dir}: already in use by another sitegate (pid {holder}) running "
                                f"site {self.name!r}; stop that one first, or give this one its own "
                                "runtime.state_dir") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._state_lock = fd

    def release_state(self) -> None:
        fd, self._state_lock = getattr(self, "_state_lock", None), None
        if fd is not None:
            os.close(fd)

    def advertise(self, name: str, url: str) -> None:
        """Record where a local endpoint of this running site listens (runtime.json in the state folder),
        so `sitegate status` and `sitegate diagnostics` can find it."""
        path = self.state_dir / "runtime.json"
        try:
            doc = json.loads(path.read_text()) if path.exists() else {}
        except ValueError:
            doc = {}
        if doc.get("pid") != os.getpid():
            doc = {"pid": os.getpid()}
        doc[name] = url
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=1, sort_keys=True))
        os.replace(tmp, path)

    def _write_applied(self) -> None:
        path = self.state_dir / "applied.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({**(self._applied or {}), "pid": os.getpid(), "applied_at": time.time()},
                                  indent=1, sort_keys=True))
        os.replace(tmp, path)

    async def _start_entry(self, spec, integration: Integration | PluginLoadError | None) -> None:
        assert self._nursery is not None
        runtime = self.loaded.site.runtime
        index = next((i for i, e in enumerate(self.loaded.site.entries) if e.id == spec.id), 0)
        failure: tuple[EntryState, str] | None = None
        config: Any = None
        if isinstance(integration, PluginLoadError) or integration is None:
            failure = (EntryState.SETUP_ERROR, str(integration or f"integration {spec.domain!r} is not loaded"))
        else:
            try:
                config = integration.structure_config(spec.config, spec.version, path=f"entries[{index}].config")
            except MigrationError as exc:
                failure = (EntryState.MIGRATION_ERROR, str(exc))
            except ConfigError as exc:
                place = getattr(self.loaded, "place", lambda i: i)   # file and line, also inside includes
                failure = (EntryState.SETUP_ERROR, "invalid config: " + "; ".join(str(place(i)) for i in exc.issues))
            else:
                # Fields naming another entry (metadata names_entry), as `sitegate check` checks them.
                problems = entry_references(self.loaded.site, config, f"entries[{index}].config")
                if problems:
                    issue = getattr(self.loaded, "issue", None)
                    failure = (EntryState.SETUP_ERROR, "invalid config: " + "; ".join(
                        str(issue(path, message)) if issue else f"{path}: {message}" for path, message in problems))
        ctx = EntryContext(self, spec, integration if isinstance(integration, Integration) else _Missing(spec.domain), config)
        runner = EntryRunner(ctx, backoff=[float(d) for d in runtime.retry_backoff], jitter=runtime.retry_jitter,
                             unload_timeout=float(runtime.unload_timeout))
        self.runners[spec.id] = runner
        if failure is not None:
            ctx._set_state(*failure)
            runner.loaded.set()
            return
        await self._nursery.start(runner.run, name=f"entry:{spec.id}")
        # Wait for the first setup attempt so `started` means "every entry has tried once";
        # bounded so one slow setup cannot hold up the site.
        with trio.move_on_after(30):
            await runner.loaded.wait()

    async def _stop_entry(self, entry_id: str) -> None:
        runner = self.runners.pop(entry_id, None)
        if runner is None:
            return
        if runner.scope is None:   # never started (config or plugin error)
            runner.ctx._set_state(EntryState.NOT_LOADED)
            return
        await runner.unload()

    async def reload_entry(self, entry_id: str) -> None:
        runner = self.runners.get(entry_id)
        if runner is None:
            raise KeyError(entry_id)
        spec = runner.ctx.spec
        await self._stop_entry(entry_id)
        integ = self.loader.loaded.get(spec.domain)
        await self._start_entry(spec, integ)

    async def unload_entry(self, entry_id: str) -> None:
        runner = self.runners.get(entry_id)
        if runner is None:
            raise KeyError(entry_id)
        await runner.unload()

    async def upgrade_plugin(self, domain: str, spec: str = "", **kw):
        """Upgrade `domain` live with automatic rollback (see upgrade.py)."""
        from .upgrade import upgrade_plugin
        return await upgrade_plugin(self, domain, spec, **kw)

    async def rollback_plugin(self, domain: str, **kw):
        from .upgrade import rollback_plugin
        return await rollback_plugin(self, domain, **kw)

    async def shutdown(self) -> bool:
        """Unload every entry (reverse start order) within the shutdown timeout. True if all unloaded cleanly."""
        timeout = float(self.loaded.site.runtime.shutdown_timeout)
        ok = True
        with trio.move_on_after(timeout) as cs:
            for entry_id in reversed(list(self.runners)):
                runner = self.runners[entry_id]
                if runner.scope is not None:
                    ok = await runner.unload() and ok
            for service in reversed(list(self.services.values())):
                close = getattr(service, "aclose", None)
                if close is not None:
                    await close()
        if cs.cancelled_caught:
            log.error("shutdown took longer than %.1f s; cancelling what is left", timeout)
            ok = False
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()
        return ok

    # --- questions and commands -------------------------------------------------
    def entry(self, entry_id: str) -> EntryContext:
        return self.runners[entry_id].ctx

    def entries(self) -> list[dict[str, Any]]:
        return [r.ctx.describe() for r in self.runners.values()]

    async def command(self, entry_id: str, command: Command) -> CommandResult:
        """Send a command to the adapter entry that owns the device; ack, nack or timeout, never silence."""
        ctx = self.entry(entry_id)
        hook = ctx.integration.hook("adapter_command")
        if hook is None:
            return CommandResult("nack", f"integration {ctx.domain!r} takes no commands")
        if ctx.state is not EntryState.LOADED:
            return CommandResult("nack", f"entry {entry_id!r} is {ctx.state}")
        if command.action == "write" and command.point is not None:
            point = self.devices.point(command.device, command.point)
            refusal = write_refusal(point, command.value) if point is not None else None
            if refusal:
                return CommandResult("nack", f"{command.device}/{command.point} {refusal}")
        with trio.move_on_after(command.timeout) as cs:
            try:
                result = await hook(entry=ctx, command=command)
            except Exception as exc:  # noqa: BLE001
                result = CommandResult("nack", f"{type(exc).__name__}: {exc}")
        if cs.cancelled_caught:
            result = CommandResult("timeout", f"no answer within {command.timeout:g} s")
        self.events.emit(Event("command", entry_id, command.device, command.point,
                               Severity.INFO if result.ok else Severity.WARNING,
                               f"{command.action} -> {result.status}",
                               {"action": command.action, "status": result.status, "detail": result.detail,
                                "issued_by": command.issued_by}))
        return result


def write_refusal(point: PointInfo, value: Any) -> str | None:
    """Why `value` cannot be written to `point` (not writable, wrong type), or None: checked by
    the core before any adapter sees the write, so every integration refuses the same way."""
    if not point.writable:
        return "is not writable"
    kind = point.datatype
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "float":
        ok = is_number and value == value and value not in (float("inf"), float("-inf"))
    elif kind == "int":
        ok = is_number and float(value).is_integer()
    elif kind == "bool":
        ok = isinstance(value, bool) or value in (0, 1)
    elif kind == "str":
        ok = isinstance(value, str)
    else:
        return None
    if ok:
        return None
    return f"takes {'a finite float' if kind == 'float' else 'an ' + kind if kind == 'int' else 'a ' + kind}; " \
           f"got {value!r} ({type(value).__name__})"


class DeviceDirectory:
    """Devices and points declared by adapter entries (in memory; twins persist them)."""

    def __init__(self, events: EventBus):
        self.events = events
        self.devices: dict[str, DeviceInfo] = {}
        self.points: dict[tuple[str, str], PointInfo] = {}

    def declare(self, info: DeviceInfo) -> None:
        old = self.devices.get(info.id)
        self.devices[info.id] = info
        for p in info.points:
            self.points[(info.id, p.name)] = p
        if old != info:
            self.events.emit(Event("device.declared", info.entry, info.id, data={"device": info.id}))

    def forget_entry(self, entry_id: str) -> None:
        for dev_id in [d for d, i in self.devices.items() if i.entry == entry_id]:
            del self.devices[dev_id]
            for key in [k for k in self.points if k[0] == dev_id]:
                del self.points[key]

    def point(self, device: str, point: str) -> PointInfo | None:
        return self.points.get((device, point))


class _Missing:
    """Stands in for an integration that failed to load, so the entry can show why."""

    def __init__(self, domain: str):
        from .manifest import Manifest
        self.domain = domain
        self.manifest = Manifest(domain=domain if domain.isidentifier() else "missing", name=domain,
                                 version="0.0.0", kinds=["adapter"], requires=">=0")
        self.hooks: dict[str, Any] = {}

    def hook(self, name: str) -> None:
        return None
