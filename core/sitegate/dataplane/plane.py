"""The data plane of one site: WAL, route stage, per-sink delivery, retention, wired to a SiteHost.

`start_dataplane(host, nursery)` opens the site's SQLite file, seeds the
pipeline's sequence numbers from it, compiles the routes (resolving each
processor once), installs the stage, and follows sinks as their entries load
and unload. SiteHost.run starts it before any entry, so nothing is published
before the WAL is there.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

import trio

from ..config.schema import Site
from ..entries import EntryState, IngressDeadLetter
from ..errors import ConfigError, PluginLoadError
from ..model import Event, Severity
from ..plugins import ProcessorContext
from ..structure import converter, structure
from .deadletters import (KINDS, Selection, count_dead_letters, ingress_outcome, list_dead_letters,
                          purge_dead_letters, replay_dead_letters, show_dead_letter)
from .delivery import SinkDelivery
from .privacy import PrivacyGuard
from .retention import Retention, read_drops
from .routes import RouteTable, compile_route
from .stage import RouteStage
from .wal import (CRITICAL, LOW, NORMAL, WalClosed, WriteAheadLog, requested_ingress_replays,
                  settle_ingress_replays, store_ingress_dead_letters)

if TYPE_CHECKING:  # pragma: no cover
    from ..host import SiteHost

log = logging.getLogger(__name__)

WAL_FILE = "site.sqlite"


class DataPlane:
    # Delivery batching: a class is delivered once this many readings wait, or its period is up.
    batch_readings = 5000
    fetch_records = 1000
    retention_every = 1.0
    idle_poll = 5.0          # longest a delivery sleeps without looking at the WAL
    deliver_timeout = 60.0   # a deliver call taking longer is cancelled and retried
    flush_every = 1.0
    # Ingress dead letters (payloads an adapter could not decode, EntryContext.dead_letter): every one
    # is stored, but the table keeps at most this many of them and at most this share of the storage
    # budget in payload bytes, the oldest going first; a payload is stored up to ingress_payload_max.
    ingress_dead_letters_max = 10_000
    ingress_dead_letters_budget_share = 0.05
    ingress_payload_max = 64 * 1024
    # `sitegate dlq replay` of ingress dead letters: looked for this often, handed to entries this many at a time.
    replay_every = 1.0
    replay_batch = 500

    def __init__(self, host: "SiteHost"):
        self.host = host
        site: Site = host.loaded.site
        self.wal = WriteAheadLog(host.state_dir / WAL_FILE,
                                 synchronous="FULL" if site.durability == "power-loss" else "NORMAL")
        self.deliveries: dict[str, SinkDelivery] = {}
        self.draining = False
        self._routes_key: Any = None
        self._nursery: trio.Nursery | None = None
        self._scope = trio.CancelScope()
        self.table = RouteTable([], host.devices.point)
        self.stage = RouteStage(self.table, self.wal, host.pipeline, self.emit)
        self.drops: dict[str, int] = {}              # "<prio>/<reason>" -> readings dropped, this run
        # Ingress dead letters wait here (appended on the trio thread) until the WAL's writer takes
        # them all in one op: one insert per group commit however many arrive, nothing blocks.
        self._dl_lock = threading.Lock()
        self._dl_rows: list[tuple] = []
        self._dl_queued = False
        self._dl_totals = [-1, 0]                    # ingress rows and payload bytes (writer thread)
        self.ingress_dead_letters = {"stored": 0, "removed_by_cap": 0, "lost": 0, "write_failures": 0}
        self._dl_warned = 0.0
        self.ingress_replays = {"decoded": 0, "failed_again": 0, "untried": 0}
        # Dead letters in the table by kind, for metrics and dlq.* events: changed by what this site
        # does (counted as it does it, in the writer thread) and counted again when another process
        # (`sitegate dlq`) wrote to the file or a group rolled back.
        self.dead_letters = dict.fromkeys(KINDS, 0)
        self._dl_seen: tuple[int, int] | None = None  # (data_version, failed_groups) when last counted
        self._dl_added = dict.fromkeys(KINDS, 0)      # since the last dlq.added event
        self._replaying = trio.Lock()
        self._applied = False                        # the first apply (every entry started once) is done
        self._configure(site)

    def emit(self, event: Event) -> None:
        self.host.events.emit(event)

    def _configure(self, site: Site) -> None:
        st = site.storage
        self.periods = {CRITICAL: 0.0, NORMAL: float(st.normal_period), LOW: float(st.low_period)}
        self.retry_initial = float(st.retry_initial)
        self.retry_max = float(st.retry_max)
        self.privacy = PrivacyGuard(st.privacy.restricted, st.privacy.allow_raw, self.host.devices.point)
        ttl = (float(st.ttl.critical), float(st.ttl.normal), float(st.ttl.low))
        if not hasattr(self, "retention"):
            self.retention = Retention(self.wal, budget=int(st.budget), ttl=ttl)
            self.wal.after_append = self.retention.enforce_budget
            self.wal.on_after = self._budget_report
        else:
            self.retention.budget, self.retention.ttl = int(st.budget), ttl
        if st.privacy.allow_raw:
            log.warning("site %s: storage.privacy.allow_raw is true: restricted points may leave the site raw",
                        site.site)

    # --- start and stop --------------------------------------------------------------
    async def start(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        await trio.to_thread.run_sync(self.wal.open)
        self.wal.start()
        self.host.pipeline.seed_sequences(self.wal.next_seq)
        self.wal.on_commit.append(self._committed)
        await self.wal.call(self._check_outside_writes)
        await trio.to_thread.run_sync(self._load_route_processors)
        self.rebuild_routes()
        self.host.on_apply.append(self._on_apply)
        self.host.events.add_callback(self._on_event)
        self.host.services["dataplane"] = self
        for sink_id, sink in list(self.host.sinks.items()):
            self._attach(sink_id, sink)
        nursery.start_soon(self._background, name="dataplane:background")

    async def _background(self) -> None:
        # Flush and retention live under the plane's own scope, so closing the plane stops them
        # before the WAL closes; a failure is logged and retried, never allowed to end the site.
        with self._scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._guarded, self._flush_loop, "processor flush")
                nursery.start_soon(self._guarded, self._retention_loop, "retention")
                nursery.start_soon(self._guarded, self._replay_loop, "ingress dead-letter replay")

    async def _guarded(self, loop, what: str) -> None:
        while True:
            try:
                await loop()
            except WalClosed:
                return
            except Exception as exc:  # noqa: BLE001
                log.exception("data plane %s failed; restarting it in 1 s", what)
                self.emit(Event("dataplane.error", "core", severity=Severity.CRITICAL,
                                message=f"{what} failed: {type(exc).__name__}: {exc}", data={"task": what}))
                await trio.sleep(1.0)

    async def aclose(self) -> None:
        """Stop delivery and background work, commit what is queued, close the file."""
        self._scope.cancel()
        for d in list(self.deliveries.values()):
            d.scope.cancel()
        self.deliveries.clear()
        if self.host.pipeline.stage is self.stage:
            self.host.pipeline.stage = None
        if not self.wal.closed:
            await self.wal.aclose()

    # --- routes ----------------------------------------------------------------------
    async def _on_apply(self, host: "SiteHost") -> None:
        await trio.to_thread.run_sync(self._load_route_processors)
        self._applied = True
        self._configure(host.loaded.site)
        self.rebuild_routes()

    def rebuild_routes(self) -> None:
        """Compile the site's routes; processors are created (and their state reset) only when routes changed."""
        site: Site = self.host.loaded.site
        key = converter.unstructure(site.routes)
        if key == self._routes_key:
            return
        compiled = []
        for i, route in enumerate(site.routes):
            cr = compile_route(i, route)
            try:
                cr.steps = [self._create_step(i, j, step, cr.name) for j, step in enumerate(route.through)]
            except (ConfigError, PluginLoadError, ValueError, TypeError) as exc:
                # `sitegate check` reports this before a site runs; at run time the route is left out, loudly.
                log.error("route %s left out: %s", cr.name, exc)
                self.emit(Event("route.error", "core", severity=Severity.CRITICAL,
                                message=f"route {cr.name} left out: {exc}", data={"route": cr.name}))
                continue
            compiled.append(cr)
        self.table.routes = compiled
        self.table.invalidate()
        self._routes_key = key
        self.host.pipeline.stage = self.stage if compiled else None

    def _create_step(self, i: int, j: int, step: Any, route_name: str) -> Any:
        path = f"routes[{i}].through[{j}]"
        if not isinstance(step, dict) or len(step) != 1:
            raise ConfigError(f"{path}: expected a one-key mapping {{processor type: {{parameters}}}}")
        (name, params), = step.items()
        found = self._processor_type(str(name))
        if found is None:
            raise ConfigError(f"{path}: unknown processor type {name!r}")
        _, ptype = found
        args = None
        if ptype.params is not None:
            args = structure({} if params is None else params, ptype.params, path=f"{path}.{name}",
                             file=str(self.host.loaded.path))
        ctx = ProcessorContext(site=self.host.name, route=route_name, emit=self.emit, clock=self.host.clock)
        return ptype.create(args, ctx)

    def _load_route_processors(self) -> None:
        """Install, verify and import the integrations of the processors the routes name (worker
        thread: a plugin's import is CPU work the event loop must not wait for; applies are
        serialised, so the loader is used from one thread at a time). What cannot be loaded is
        left for rebuild_routes to report with the route."""
        for route in self.host.loaded.site.routes:
            for step in route.through:
                if isinstance(step, dict) and len(step) == 1:
                    try:
                        self._processor_type(str(next(iter(step))))
                    except (ConfigError, PluginLoadError, ValueError, TypeError):
                        pass

    def _processor_type(self, name: str):
        loader = self.host.loader
        found = loader.processor_type(name)
        if found is not None:
            return found
        # Processor integrations are used through routes: load the site's pinned ones and the one named.
        available = loader.source.available()
        wanted = {d for d in (*self.host.loaded.site.plugins, name)
                  if d in available and "processor" in available[d].kinds}
        for domain in loader.plan(wanted):
            loader.load_one(domain)
        return loader.processor_type(name)

    # --- sinks -----------------------------------------------------------------------
    def _on_event(self, event: Event) -> None:
        if event.kind == "sink.attached":
            sink = self.host.sinks.get(event.source)
            if sink is not None:
                self._attach(event.source, sink)
        elif event.kind == "sink.detached":
            d = self.deliveries.pop(event.source, None)
            if d is not None:
                d.scope.cancel()
        elif event.kind == "device.declared":
            # Tags and restricted flags may have changed: decide again.
            self.table.invalidate()
            self.privacy.invalidate()

    def _attach(self, sink_id: str, sink: Any) -> None:
        old = self.deliveries.pop(sink_id, None)
        if old is not None:
            old.scope.cancel()
        if self._nursery is None or self.wal.closed:
            return
        d = SinkDelivery(self, sink_id, sink)
        self.deliveries[sink_id] = d
        self._nursery.start_soon(self._run_delivery, d, name=f"dataplane:deliver:{sink_id}")

    async def _run_delivery(self, d: SinkDelivery) -> None:
        try:
            await d.run()
        except Exception as exc:  # noqa: BLE001 - one sink's failure must not take the site down
            log.exception("delivery to %s stopped", d.sink_id)
            self.emit(Event("sink.state", d.sink_id, severity=Severity.CRITICAL,
                            message=f"delivery stopped: {type(exc).__name__}: {exc}",
                            data={"sink": d.sink_id, "from": d.state, "state": "offline", "reason": str(exc)}))
        finally:
            if self.deliveries.get(d.sink_id) is d:
                del self.deliveries[d.sink_id]

    def _committed(self, prio_counts: list[int]) -> None:
        for d in self.deliveries.values():
            d.notify(prio_counts)

    # --- time-driven work ------------------------------------------------------------------
    async def _flush_loop(self) -> None:
        next_tick = trio.current_time()
        while True:
            next_tick += self.flush_every
            await trio.sleep_until(next_tick)
            rows = self.stage.flush_rows(self.host.clock())
            if rows:
                await self.wal.append(rows)

    async def _retention_loop(self) -> None:
        while True:
            await trio.sleep(self.retention_every)
            await self.retain()

    async def retain(self) -> dict[str, int]:
        """Run retention now (acknowledged and expired records); readings expired per priority."""
        sinks = self.table.sinks()
        expired = await self.wal.call(lambda conn: self.retention.retain(conn, sinks, time.time()))
        if expired:
            for prio, n in expired.items():
                self.drops[f"{prio}/ttl"] = self.drops.get(f"{prio}/ttl", 0) + n
            self.emit(Event("storage.drop", "core", severity=Severity.WARNING,
                            message="expired before delivery: " + ", ".join(f"{n} {p}" for p, n in expired.items()),
                            data={"reason": "ttl", "readings": expired}))
        return expired

    def _budget_report(self, report: dict[str, Any]) -> None:
        dropped = report["dropped"]
        for prio, n in dropped.items():
            self.drops[f"{prio}/budget"] = self.drops.get(f"{prio}/budget", 0) + n
        if dropped:
            self.emit(Event("storage.drop", "core", severity=Severity.WARNING,
                            message="disk budget reached, dropped oldest: " +
                                    ", ".join(f"{n} {p}" for p, n in dropped.items()),
                            data={"reason": "budget", "readings": dropped, "bytes": report["bytes"]}))
        if report["over_budget"]:
            self.emit(Event("storage.over_budget", "core", severity=Severity.CRITICAL,
                            message="only critical readings are stored and they exceed the disk budget; "
                                    "they are kept", data={"bytes": report["bytes"]}))

    # --- ingress dead letters ----------------------------------------------------------------
    def dead_letter_ingress(self, entry_id: str, payload: bytes, *, source: str, error: str,
                            device: str | None = None, at: float | None = None, context: str = "") -> None:
        """Store a received payload that could not be decoded (see EntryContext.dead_letter); never blocks."""
        payload = bytes(payload)
        if len(payload) > self.ingress_payload_max:
            error = f"{error} (payload cut to its first {self.ingress_payload_max} of {len(payload)} bytes)"
            payload = payload[:self.ingress_payload_max]
        row = (entry_id, device or "", str(error), time.time() if at is None else float(at), payload, str(source),
               str(context))
        with self._dl_lock:
            self._dl_rows.append(row)
            queued, self._dl_queued = self._dl_queued, True
        if queued:
            return
        try:
            self.wal.call_nowait(self._store_dead_letters, done=self._dead_letters_stored)
        except WalClosed:
            with self._dl_lock:
                lost, self._dl_rows, self._dl_queued = len(self._dl_rows), [], False
            self.ingress_dead_letters["lost"] += lost
            log.warning("%d ingress dead letter(s) not stored: the WAL is closed", lost)

    async def flush_dead_letters(self) -> None:
        """Return once the ingress dead letters handed over so far are committed (the WAL writes in order)."""
        try:
            await self.wal.call(lambda conn: None)
        except WalClosed:
            pass

    def _store_dead_letters(self, conn) -> tuple[int, int]:
        # In the WAL's writer thread, inside the group's transaction.
        with self._dl_lock:
            rows, self._dl_rows, self._dl_queued = self._dl_rows, [], False
        if not rows:
            return 0, 0
        max_bytes = max(1 << 20, int(self.retention.budget * self.ingress_dead_letters_budget_share))
        try:
            removed = store_ingress_dead_letters(conn, rows, self._dl_totals, max_rows=self.ingress_dead_letters_max,
                                                 max_bytes=max_bytes)
        except BaseException:
            self._dl_totals[:] = [-1, 0]
            raise
        self.dead_letters["ingress"] += len(rows) - removed
        return len(rows), removed

    def _dead_letters_stored(self, op) -> None:
        if op.error is not None:
            self._dl_totals[:] = [-1, 0]
            self.ingress_dead_letters["write_failures"] += 1
            log.error("ingress dead letters not stored: %s", op.error)
            return
        stored, removed = op.result
        self._dl_added["ingress"] += stored
        counts = self.ingress_dead_letters
        counts["stored"] += stored
        counts["removed_by_cap"] += removed
        now = time.monotonic()
        if removed and now - self._dl_warned > 60.0:
            self._dl_warned = now
            log.warning("ingress dead letters: the table is at its cap (%d rows, %.0f %% of the storage budget); "
                        "the oldest are removed (%d so far this run)", self.ingress_dead_letters_max,
                        100 * self.ingress_dead_letters_budget_share, counts["removed_by_cap"])

    # --- replaying ingress dead letters (`sitegate dlq replay`) ------------------------------
    async def _replay_loop(self) -> None:
        while True:
            await trio.sleep(self.replay_every)
            changed, put_back = await self.wal.call(self._check_outside_writes)
            if any(put_back):
                self._committed(put_back)              # delivered at once, not at the next poll
            if changed:
                self._emit_dlq("dlq.changed", Severity.INFO, "the dead-letter table was changed by another process "
                               "(sitegate dlq)", {})
            self._report_added()
            while True:
                done = await self.replay_ingress()
                if done["requested"] < self.replay_batch or done["requested"] == done["waiting"]:
                    break                            # else more may be asked for: go on at once

    async def replay_ingress(self) -> dict[str, int]:
        async with self._replaying:               # the loop and the API's replay_dead_letters
            return await self._replay_ingress()

    async def _replay_ingress(self) -> dict[str, int]:
        """Hand the ingress dead letters asked for (`sitegate dlq replay` sets `replay` in the file)
        to the entries that stored them, to decode again with their current mapping
        (EntryContext.on_redecode). Decoded: deleted once the readings are committed. Failing
        again: kept with the new error and one more attempt. Entry not running, or unable to
        decode again: kept as they are, `note` says why. Entries being set up (or the site being
        applied) are waited for. Returns counts of this round."""
        out = {"requested": 0, "decoded": 0, "failed_again": 0, "untried": 0, "waiting": 0}
        if not self._applied or self.host._apply_lock.locked():
            return out
        rows = await self.wal.call(lambda conn: requested_ingress_replays(conn, self.replay_batch))
        out["requested"] = len(rows)
        by_entry: dict[str, list] = {}
        for r in rows:
            by_entry.setdefault(r[1], []).append(r)
        decoded: list[int] = []
        failed: list[tuple[int, str]] = []
        untried: list[tuple[int, str]] = []
        for entry_id, letters in by_entry.items():
            why, fn = self._redecoder(entry_id)
            if fn is None:
                if why is None:
                    out["waiting"] += len(letters)       # being set up: next round
                else:
                    untried += [(r[0], why) for r in letters]
                continue
            batch = [IngressDeadLetter(r[0], bytes(r[2]), r[3], r[4], r[5] or None, r[6], r[7]) for r in letters]
            try:
                results = list(await fn(batch))
                if len(results) != len(batch):
                    raise ValueError(f"returned {len(results)} results for {len(batch)} dead letters")
            except Exception as exc:  # noqa: BLE001 - an integration's bug must not stop the others
                log.exception("entry %s: decoding dead letters again failed", entry_id)
                untried += [(r[0], f"entry {entry_id!r} failed to decode them again: {type(exc).__name__}: {exc}")
                            for r in letters]
                continue
            for r, result in zip(letters, results):
                if result is None:
                    decoded.append(r[0])
                else:
                    failed.append((r[0], str(result)))
        if decoded or failed or untried:
            def settle(conn):
                self.dead_letters["ingress"] -= settle_ingress_replays(conn, decoded, failed, untried, self._dl_totals)
            await self.wal.call(settle)
        out.update(decoded=len(decoded), failed_again=len(failed), untried=len(untried))
        for key in ("decoded", "failed_again", "untried"):
            self.ingress_replays[key] += out[key]
        if decoded or failed or untried:
            self.emit(Event("dlq.replayed", "core", severity=Severity.WARNING if failed or untried else Severity.INFO,
                            message=f"ingress dead letters replayed: {len(decoded)} decoded, {len(failed)} failed "
                                    f"again, {len(untried)} not tried" + (f" ({untried[0][1]})" if untried else ""),
                            data={"kind": "ingress", **{k: out[k] for k in ("decoded", "failed_again", "untried")},
                                  "stored": dict(self.dead_letters)}))
        return out

    def _redecoder(self, entry_id: str) -> tuple[str | None, Any]:
        """(None, fn): the entry decodes again with fn; (None, None): it is being set up, wait;
        (why, None): it cannot now."""
        runner = self.host.runners.get(entry_id)
        if runner is None:
            spec = next((e for e in self.host.loaded.site.entries if e.id == entry_id), None)
            return (f"entry {entry_id!r} is " + ("disabled" if spec is not None and spec.disabled
                                                 else "not in the site"), None)
        ctx = runner.ctx
        if ctx.state in (EntryState.SETUP_IN_PROGRESS, EntryState.UNLOAD_IN_PROGRESS):
            return None, None
        if ctx.state is not EntryState.LOADED:
            return f"entry {entry_id!r} is not running ({ctx.state}{': ' + ctx.reason if ctx.reason else ''})", None
        if ctx.redecoder is None:
            return (f"entry {entry_id!r} (integration {ctx.domain!r}) cannot decode its dead letters again; "
                    "`dlq show` them, `dlq purge` them", None)
        return None, ctx.redecoder

    # --- the dead-letter table for the WebSocket API (dlq commands; the CLI has its own connection) ----
    def _check_outside_writes(self, conn) -> tuple[bool, list[int]]:
        # In the writer thread. Another process (`sitegate dlq`) wrote to the file when PRAGMA
        # data_version moved (it moves only for other connections' commits): the records it put
        # back are counted (depth, backlogs) and the dead letters counted again, as they are after
        # a group rolled back. Returns whether that changed the dead-letter counts (not at the
        # first count) and readings put back per priority.
        seen = (conn.execute("PRAGMA data_version").fetchone()[0], self.wal.failed_groups)
        if seen == self._dl_seen:
            return False, [0, 0, 0]
        prio_counts = [0, 0, 0]
        if self._dl_seen is not None and seen[0] != self._dl_seen[0]:
            prio_counts = self.wal.adopt_outside_records(conn)
        before, first = dict(self.dead_letters), self._dl_seen is None
        self.dead_letters.update(count_dead_letters(conn))
        self._dl_seen = seen
        return not first and before != self.dead_letters, prio_counts

    def _emit_dlq(self, kind: str, severity: Severity, message: str, data: dict[str, Any]) -> None:
        self.emit(Event(kind, "core", severity=severity, message=message,
                        data={**data, "stored": dict(self.dead_letters)}))

    def sink_dead_lettered(self, n: int) -> None:
        """A sink's delivery stored `n` sink dead letters (delivery.py); for the next dlq.added event."""
        self._dl_added["sink"] += n

    def _report_added(self) -> None:
        added, self._dl_added = self._dl_added, dict.fromkeys(KINDS, 0)
        if any(added.values()):
            self._emit_dlq("dlq.added", Severity.WARNING,
                           "new dead letters: " + ", ".join(f"{n} {k}" for k, n in added.items() if n),
                           {"added": added})

    async def _read(self, fn) -> Any:
        def run():
            conn = self.wal.reader()
            try:
                return fn(conn)
            finally:
                conn.close()
        return await trio.to_thread.run_sync(run)

    async def list_dead_letters(self, sel: Selection, *, after: int = 0, limit: int | None = None) -> list[dict]:
        """Dead letters without their payloads (deadletters.list_dead_letters), read off the writer thread."""
        return await self._read(lambda conn: list_dead_letters(conn, sel, after=after, limit=limit))

    async def show_dead_letter(self, dead_letter_id: int) -> dict[str, Any]:
        return await self._read(lambda conn: show_dead_letter(conn, dead_letter_id, self.host.name))

    async def replay_dead_letters(self, sel: Selection) -> dict[str, Any]:
        """Replay as `sitegate dlq replay` does, in the WAL's writer: sink dead letters go back to the
        WAL for their sink (same msgIds) and delivery is woken; ingress ones are handed to their
        entries at once (what is not done in this round stays asked for). What happened to each."""
        def replay(conn):
            done = replay_dead_letters(conn, sel, time.time(), in_transaction=True)
            self.dead_letters["sink"] -= len(done.records)
            return done, self.wal.count_inserted(done.records, done.first_id)
        done, prio_counts = await self.wal.call(replay)
        if done.records:
            self._committed(prio_counts)
            self._emit_dlq("dlq.replayed", Severity.INFO,
                           f"sink dead letters replayed: {len(done.records)} ({done.readings} readings) back in the "
                           "WAL for their sinks", {"kind": "sink", "replayed": len(done.records),
                                                   "readings": done.readings})
        out: dict[str, Any] = {"sink": {"replayed": len(done.records), "readings": done.readings}}
        if done.ingress:
            if self._applied:
                await self.replay_ingress()
            got = await self._read(lambda conn: ingress_outcome(conn, done.ingress))
            out["ingress"] = {"asked": len(done.ingress), "decoded": got["decoded"],
                              "failed": [{"id": i, "error": e} for i, e in got["failed"]],
                              "untried": [{"id": i, "note": n} for i, n in got["untried"]],
                              "pending": got["pending"]}
        else:
            out["ingress"] = {"asked": 0, "decoded": [], "failed": [], "untried": [], "pending": []}
        return out

    async def purge_dead_letters(self, sel: Selection) -> dict[str, int]:
        """Delete dead letters for good (as `sitegate dlq purge`); how many of each kind went."""
        def purge(conn):
            gone = purge_dead_letters(conn, sel)
            for kind, n in gone.items():
                self.dead_letters[kind] -= n
            if gone["ingress"]:
                self._dl_totals[:] = [-1, 0]
            return gone
        gone = await self.wal.call(purge)
        if any(gone.values()):
            self._emit_dlq("dlq.purged", Severity.INFO, "dead letters purged: " +
                           ", ".join(f"{n} {k}" for k, n in gone.items() if n), {"purged": gone})
        return gone

    # --- questions ----------------------------------------------------------------------
    async def drop_counts(self) -> dict[str, dict[str, int]]:
        """Every drop recorded in the file (all runs), by "<priority>/<reason>"."""
        return await self.wal.call(read_drops)

    def sink_status(self) -> dict[str, dict[str, Any]]:
        """Per attached sink: its state, a cursor that moves as it delivers, and its backlog: records
        still in the WAL after its cursor (ones of other sinks' routes included; ones retention
        removed, by TTL or the disk budget, not: they will never be delivered). `head` is where
        the cursors go (the newest ids; with `cursor`, a position, not a count: the sync-lag detector)."""
        head = sum(self.wal.last_ids)
        return {k: {"state": d.state, "cursor": sum(d.cursors), "head": head, "backlog": self.backlog(d),
                    "delivered": d.delivered_readings,
                    "duplicates": int(getattr(self.host.sinks.get(k), "duplicates", 0) or 0), "dead_letters": d.dead_letters,
                    "withheld": d.withheld, "last_error": d.last_error}
                for k, d in self.deliveries.items()}

    def backlog(self, d: SinkDelivery) -> int:
        """Records in the WAL after the sink's cursors: per priority, the newest record's number
        minus the last passed or removed one's (WriteAheadLog.removed). No query: a few additions."""
        wal = self.wal
        return sum(max(0, wal.removed[p] + wal.live[p][0] - max(d.passed[p], wal.removed[p])) for p in range(3))

    def describe(self) -> dict[str, Any]:
        live = self.wal.live
        return {"wal": str(self.wal.path), "synchronous": self.wal.synchronous,
                "stored": {p: {"records": live[i][0], "readings": live[i][1], "bytes": live[i][2]}
                           for i, p in enumerate(("critical", "normal", "low"))},
                "committed_readings": self.wal.committed_readings, "unrouted": self.table.unrouted,
                "drops": dict(self.drops), "privacy_withheld": self.privacy.withheld,
                "ingress_dead_letters": dict(self.ingress_dead_letters),
                "ingress_replays": dict(self.ingress_replays), "dead_letters": dict(self.dead_letters),
                "sinks": {k: {**d.describe(), "backlog": self.backlog(d)}
                          for k, d in self.deliveries.items()}}


async def start_dataplane(host: "SiteHost", nursery: trio.Nursery) -> DataPlane:
    """Start the data plane for `host` in `nursery` (once; later calls return the running one)."""
    existing = host.services.get("dataplane")
    if existing is not None:
        return existing
    plane = DataPlane(host)
    await plane.start(nursery)
    return plane
