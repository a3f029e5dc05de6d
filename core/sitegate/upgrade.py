"""Upgrading an integration while the site runs, rolling back by itself when the new version is unhealthy.

Verify the new version (signed registry), unload the entries that use the
old one, load the new, health-check them (each reaches `loaded` and an
adapter produces data within the deadline), then commit; otherwise put the
old version back the same way. Entries of other integrations keep running
throughout. Every step is an event and a line in the registry's audit log.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import attrs
import trio

from .entries import EntryState
from .errors import PluginLoadError, SitegateError
from .model import Event, Severity

if TYPE_CHECKING:  # pragma: no cover
    from .host import SiteHost

log = logging.getLogger(__name__)


@attrs.frozen
class UpgradeResult:
    domain: str
    result: str                 # upgraded | rolled_back | refused
    old_version: str | None
    new_version: str | None
    detail: str = ""
    entries: tuple[str, ...] = ()


async def _health(host: "SiteHost", entry_ids: list[str], deadline: float) -> tuple[bool, str]:
    start = {e: host.entry(e).counters.get("readings_out", 0) for e in entry_ids}
    with trio.move_on_after(deadline):
        while True:
            problems = []
            for e in entry_ids:
                ctx = host.entry(e)
                if ctx.state is not EntryState.LOADED:
                    problems.append(f"entry {e} is {ctx.state}" + (f" ({ctx.reason})" if ctx.reason else ""))
                elif "adapter" in ctx.integration.manifest.kinds and ctx.counters.get("readings_out", 0) <= start[e]:
                    problems.append(f"entry {e} produced no data yet")
            if not problems:
                return True, ""
            await trio.sleep(0.05)
    return False, "; ".join(problems) + f" within the {deadline:g} s health deadline"


async def _swap(host: "SiteHost", domain: str, entry_ids: list[str]) -> None:
    for e in entry_ids:
        await host._stop_entry(e)
    host.loader.unload_one(domain)
    try:
        integration: Any = await trio.to_thread.run_sync(host.loader.load_one, domain)   # imports: off the loop
    except PluginLoadError as exc:
        integration = exc
    specs = {s.id: s for s in host.loaded.site.entries}
    for e in entry_ids:
        await host._start_entry(specs[e], integration)
    for fn in host.on_apply:   # routes may hold processors of this integration
        result = fn(host)
        if hasattr(result, "__await__"):
            await result


def _audit(host: "SiteHost", action: str, domain: str, result: str, *, by: str, **fields: Any) -> None:
    try:
        from .registry.audit import AuditLog
        AuditLog(host.state_dir / "plugins" / "audit.jsonl", by).record(action, domain, result, **fields)
    except Exception:  # noqa: BLE001 - auditing must not break an upgrade; the event still records it
        log.exception("could not write the audit log")


async def upgrade_plugin(host: "SiteHost", domain: str, spec: str = "", *, health_deadline: float = 30.0,
                         actor: str = "operator") -> UpgradeResult:
    source = host.source
    if not hasattr(source, "stage"):
        raise SitegateError("runtime upgrades need the signed registry as plugin source (not --dev-plugins)")
    async with host._apply_lock:
        old = host.loader.loaded.get(domain)
        old_version = old.manifest.version if old else None
        affected = [e for e, r in host.runners.items() if r.ctx.spec.domain == domain and not r.ctx.spec.disabled]
        emit = host.events.emit
        emit(Event("plugin.upgrade", "core", message=f"upgrading {domain} {old_version} -> {spec or 'latest'}",
                   data={"domain": domain, "from": old_version, "spec": spec, "phase": "verify", "by": actor}))
        try:
            staged = await trio.to_thread.run_sync(source.stage, domain, spec)
        except Exception as exc:  # noqa: BLE001 - a refusal (failed check) or no such version
            detail = str(exc)
            emit(Event("plugin.upgrade", "core", severity=Severity.WARNING, message=f"{domain}: refused: {detail}",
                       data={"domain": domain, "phase": "refused", "detail": detail, "by": actor}))
            _audit(host, "upgrade", domain, "refused", detail=detail, by=actor)
            return UpgradeResult(domain, "refused", old_version, None, detail)
        new_version = staged.version
        t0 = time.monotonic()
        emit(Event("plugin.upgrade", "core", message=f"{domain}: loading {new_version} for {len(affected)} entries",
                   data={"domain": domain, "phase": "load", "to": new_version, "entries": affected}))
        await _swap(host, domain, affected)
        healthy, why = await _health(host, affected, health_deadline)
        if healthy:
            await trio.to_thread.run_sync(source.commit, domain)
            detail = f"{len(affected)} {'entry' if len(affected) == 1 else 'entries'} healthy after {time.monotonic() - t0:.1f} s"
            emit(Event("plugin.upgrade", "core", message=f"{domain} upgraded {old_version} -> {new_version}",
                       data={"domain": domain, "phase": "committed", "from": old_version, "to": new_version}))
            _audit(host, "upgrade", domain, "ok", version=new_version, previous=old_version, by=actor, detail=detail)
            return UpgradeResult(domain, "upgraded", old_version, new_version, detail, tuple(affected))
        log.error("upgrade of %s to %s failed its health check (%s); rolling back to %s",
                  domain, new_version, why, old_version)
        emit(Event("plugin.upgrade", "core", severity=Severity.CRITICAL,
                   message=f"{domain} {new_version} unhealthy: {why}; rolling back to {old_version}",
                   data={"domain": domain, "phase": "rollback", "to": old_version, "reason": why}))
        await trio.to_thread.run_sync(source.abandon, domain)
        await _swap(host, domain, affected)
        _audit(host, "upgrade", domain, "rolled_back", version=new_version, previous=old_version, by=actor,
               detail=why)
        emit(Event("plugin.upgrade", "core", severity=Severity.WARNING,
                   message=f"{domain} rolled back to {old_version}",
                   data={"domain": domain, "phase": "rolled_back", "to": old_version, "reason": why}))
        return UpgradeResult(domain, "rolled_back", old_version, new_version, why, tuple(affected))


async def rollback_plugin(host: "SiteHost", domain: str, *, actor: str = "operator") -> UpgradeResult:
    """Go back to the previous installed version of `domain` (after a committed upgrade misbehaves)."""
    source = host.source
    if not hasattr(source, "rollback"):
        raise SitegateError("rollback needs the signed registry as plugin source")
    async with host._apply_lock:
        old = host.loader.loaded.get(domain)
        previous = await trio.to_thread.run_sync(source.rollback, domain)
        affected = [e for e, r in host.runners.items() if r.ctx.spec.domain == domain and not r.ctx.spec.disabled]
        await _swap(host, domain, affected)
        host.events.emit(Event("plugin.upgrade", "core", severity=Severity.WARNING,
                               message=f"{domain} rolled back to {previous.version}",
                               data={"domain": domain, "phase": "rolled_back", "to": previous.version, "by": actor}))
        return UpgradeResult(domain, "rolled_back", old.manifest.version if old else None, previous.version,
                             "operator rollback", tuple(affected))
