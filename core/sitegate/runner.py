"""`sitegate run`: start a site, watch its files, apply edits live, stop gracefully.

SIGINT/SIGTERM unload every entry within the shutdown timeout; SIGHUP or an
edit of the site file (or a file it includes) re-applies it, reloading only
the entries whose config changed. An edit that does not read as a site file is
reported and ignored: the running site keeps its last good configuration; an
entry whose new config its integration refuses stops in setup_error instead.
"""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from typing import Awaitable, Callable

import trio

from .cli.common import counted
from .config import LoadedSite, load_site
from .errors import ConfigError
from .host import SiteHost
from .loader import PluginSource

log = logging.getLogger(__name__)

# Services started beside the entries (data plane, API, metrics) register here:
# each is `async def start(host, nursery)` run once the host is up.
SERVICES: list[Callable[[SiteHost, trio.Nursery], Awaitable[None]]] = []


def _builtin_services() -> None:
    # The data plane starts inside SiteHost.run (sequence numbers must be seeded before entries
    # publish); these start once the host is up, in this order.
    from .api import start_api
    from .observability.service import start_observability
    from .updates.service import start_rollouts
    for start in (start_observability, start_rollouts, start_api, start_route_check):
        if start not in SERVICES:
            SERVICES.append(start)


async def start_route_check(host: SiteHost, nursery: trio.Nursery) -> None:
    """`sitegate check` refuses a route to no sink entry (a typo in `to:`) or through an unknown step, but a
    running site applies the rest of the file anyway: say so in the log, at start and after every apply."""
    def warn(host: SiteHost) -> None:
        from .config.validate import validate_routes
        try:
            issues = validate_routes(host.loaded, host.loader)   # integrations are loaded: no import here
        except Exception:  # noqa: BLE001 - a check that fails must not stop a running site
            log.debug("route check skipped", exc_info=True)
            return
        for issue in issues:
            log.warning("%s; this route delivers nothing until it is fixed (`sitegate check` lists every "
                        "problem)", issue)
    warn(host)
    host.on_apply.append(warn)


_builtin_services()


def _watched_files(loaded: LoadedSite) -> list[Path]:
    files = getattr(loaded, "files", None) or [loaded.path]
    return [Path(f) for f in files]


def _mtimes(files: list[Path]) -> dict[Path, float]:
    out = {}
    for f in files:
        try:
            out[f] = f.stat().st_mtime_ns
        except FileNotFoundError:
            out[f] = -1
    return out


async def reapply(host: SiteHost, path: Path) -> bool:
    try:
        loaded = await trio.to_thread.run_sync(load_site, path)
    except ConfigError as exc:
        log.error("site file changed but is not valid; keeping the running configuration:\n%s", exc)
        return False
    await host.apply(loaded)
    return True


async def _watch(host: SiteHost, path: Path, poll: float, seen: dict[Path, float]) -> None:
    # `seen` was taken before the file was read: an edit made while the site was starting is
    # still noticed (at worst a file is applied twice, which changes nothing the second time).
    while True:
        await trio.sleep(poll)
        now = _mtimes(_watched_files(host.loaded))
        if now != seen:
            seen = now
            log.info("site file changed; applying")
            await reapply(host, path)


async def _report(host: SiteHost, every: float) -> None:
    # A heartbeat line for whoever watches the terminal: are readings flowing?
    last = host.pipeline.readings_in
    while True:
        await trio.sleep(every)
        now = host.pipeline.readings_in
        states: dict[str, int] = {}
        for info in host.entries():
            states[info["state"]] = states.get(info["state"], 0) + 1
        log.info("site %s: %d readings in the last %.0f s (%.0f/s), %d in total; entries: %s", host.name,
                 now - last, every, (now - last) / every, now, ", ".join(f"{v} {k}" for k, v in sorted(states.items())))
        last = now


async def run_site(path: Path, source: PluginSource, *, watch_interval: float = 1.0,
                   report_every: float = 10.0, task_status=trio.TASK_STATUS_IGNORED) -> bool:
    """Run until SIGINT/SIGTERM (or cancellation). Returns True if shutdown was clean."""
    seen = _mtimes([Path(path)])
    loaded = load_site(path)
    seen = {**_mtimes(_watched_files(loaded)), **seen}
    host = SiteHost(loaded, source)
    host.claim_state()      # before anything is written: a second run of the same site stops here
    try:
        return await _run_host(host, path, seen, watch_interval, report_every, task_status)
    finally:
        host.release_state()


async def _run_host(host: SiteHost, path: Path, seen: dict, watch_interval: float, report_every: float,
                    task_status) -> bool:
    clean = True
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(host.run)
            for start in SERVICES:
                await start(host, nursery)
            nursery.start_soon(_watch, host, path, watch_interval, seen)
            if report_every:
                nursery.start_soon(_report, host, report_every)
            task_status.started(host)
            log.info("site %s running with %s; state in %s", host.name,
                     counted(len(host.runners), "entry", "entries"), host.state_dir)
            async for signum in signals:
                if signum == signal.SIGHUP:
                    log.info("SIGHUP: re-applying %s", path)
                    await reapply(host, path)
                    continue
                log.info("%s: shutting down", signal.Signals(signum).name)
                clean = await host.shutdown()
                nursery.cancel_scope.cancel()
                break
    return clean
