"""Entries: one configured integration instance, its state machine and supervision.

Modelled on Home Assistant's config entries. Each entry runs in its own
cancel scope and nursery inside the site's nursery (host.py), so unloading one
cancels its tasks and nothing else. Setup failures go to retry with backoff
or to an error state; the site never dies because a plugin raised.
"""

from __future__ import annotations

import contextvars
import enum
import inspect
import logging
import random
import time
from typing import TYPE_CHECKING, Any, Awaitable, Callable

import attrs
import trio

from .errors import EntryError, EntryNotReady, MigrationError
from .model import Batch, DeviceInfo, Event, Severity

if TYPE_CHECKING:  # pragma: no cover
    from .config.schema import EntrySpec
    from .host import SiteHost
    from .loader import Integration

log = logging.getLogger(__name__)

# Which entry the running task belongs to; inherited by every task the entry starts,
# so the loop watchdog can name the entry that blocked the loop.
current_entry: contextvars.ContextVar[str | None] = contextvars.ContextVar("sitegate_entry", default=None)


class EntryState(enum.Enum):
    """Lifecycle states, with whether the core will recover from them by itself."""

    NOT_LOADED = ("not_loaded", True)
    SETUP_IN_PROGRESS = ("setup_in_progress", True)
    LOADED = ("loaded", True)
    SETUP_ERROR = ("setup_error", False)
    SETUP_RETRY = ("setup_retry", True)
    MIGRATION_ERROR = ("migration_error", False)
    UNLOAD_IN_PROGRESS = ("unload_in_progress", False)
    FAILED_UNLOAD = ("failed_unload", False)

    def __init__(self, label: str, recoverable: bool):
        self.label = label
        self.recoverable = recoverable

    def __str__(self) -> str:
        return self.label


def backoff_delays(schedule: list[float], jitter: float, rng: random.Random | None = None):
    """Yield retry delays: the schedule, then its last value forever, each plus up to `jitter` of itself."""
    rng = rng or random.Random()
    i = 0
    while True:
        base = float(schedule[min(i, len(schedule) - 1)]) if schedule else 5.0
        yield base + base * jitter * rng.random()
        i += 1


@attrs.frozen
class IngressDeadLetter:
    """An ingress dead letter handed back to the entry that stored it, to be decoded again
    (`sitegate dlq replay`, EntryContext.on_redecode): what `dead_letter` was given."""

    id: int                 # its id in the dead-letter table (`sitegate dlq list`)
    payload: bytes
    source: str             # where it came from (e.g. the MQTT topic)
    received_at: float      # when it arrived: the readings' time when the payload has none
    device: str | None
    context: str            # what else the entry stored to decode it (e.g. the MQTT-SN client id)
    attempts: int           # replays that failed before this one


Redecoder = Callable[[list[IngressDeadLetter]], Awaitable[list["str | None"]]]


class EntryContext:
    """What an integration's hooks see of the site: the entry's config, tasks, and outlets.

    Passed to setup_entry, unload_entry, adapter_command, sink_factory,
    update_handler and entry_diagnostics.
    """

    def __init__(self, host: "SiteHost", spec: "EntrySpec", integration: "Integration", config: Any):
        self.host = host
        self.spec = spec
        self.id = spec.id
        self.domain = spec.domain
        self.integration = integration
        self.config = config
        self.site = host.name
        self.log = logging.LoggerAdapter(logging.getLogger(f"sitegate.entry.{spec.id}"),
                                         {"entry_id": spec.id, "domain": spec.domain})
        self.state = EntryState.NOT_LOADED
        self.reason = ""                   # why the entry is in its state (error text)
        self.state_since = time.time()
        self.retries = 0
        self.data: dict[str, Any] = {}     # the integration's own runtime objects (HA: entry.runtime_data)
        self.counters: dict[str, int] = {"batches_out": 0, "readings_out": 0, "task_failures": 0}
        self._nursery: trio.Nursery | None = None
        self._cleanups: list[Callable[[], Any]] = []
        self.redecoder: Redecoder | None = None   # on_redecode's function while the entry is set up

    # --- for integrations ------------------------------------------------------
    @property
    def state_dir(self):
        path = self.host.state_dir / "entries" / self.id
        path.mkdir(parents=True, exist_ok=True)
        return path

    def clock(self) -> float:
        """Wall-clock seconds (time.time), replaceable by a test clock through the host."""
        return self.host.clock()

    def start_task(self, fn: Callable[..., Awaitable[Any]], *args: Any, name: str | None = None) -> None:
        """Run ``fn(*args)`` in this entry's nursery; it is cancelled when the entry unloads.

        If it raises, the entry's tasks are cancelled and the entry goes to
        setup_retry (EntryNotReady or any error) or setup_error (EntryError).
        """
        if self._nursery is None:
            raise RuntimeError(f"entry {self.id!r}: start_task is only allowed from setup_entry on")
        self._nursery.start_soon(fn, *args, name=name or f"{self.id}:{getattr(fn, '__name__', 'task')}")

    async def start(self, fn: Callable[..., Awaitable[Any]], *args: Any, name: str | None = None) -> Any:
        """Like start_task, but waits until the task calls ``task_status.started(value)``; returns value."""
        if self._nursery is None:
            raise RuntimeError(f"entry {self.id!r}: start is only allowed from setup_entry on")
        return await self._nursery.start(fn, *args, name=name or f"{self.id}:{getattr(fn, '__name__', 'task')}")

    def on_unload(self, callback: Callable[[], Any]) -> None:
        """Register cleanup (plain or async callable) run at unload, in reverse order of registration."""
        self._cleanups.append(callback)

    async def publish(self, batch: Batch) -> Batch:
        """Hand a batch to the pipeline; returns once it is accepted (stamped with sequence numbers).

        Waits when the pipeline is saturated: that is the backpressure an
        adapter should feel (poll slower, answer "congestion").
        """
        if batch.source != self.id:
            batch = attrs.evolve(batch, source=self.id)
        stamped = await self.host.pipeline.submit(batch)
        self.counters["batches_out"] += 1
        self.counters["readings_out"] += len(batch)
        return stamped

    async def publish_many(self, batches: list[Batch]) -> list[Batch]:
        """Hand over several batches at once (one poll of many devices): cheaper than one call each."""
        eid = self.id
        batches = [b if b.source == eid else attrs.evolve(b, source=eid) for b in batches]
        stamped = await self.host.pipeline.submit_many(batches)
        self.counters["batches_out"] += len(batches)
        self.counters["readings_out"] += sum(len(b) for b in batches)
        return stamped

    def try_publish(self, batch: Batch) -> bool:
        """Hand over a batch without waiting; False when the pipeline is saturated (nothing taken)."""
        if batch.source != self.id:
            batch = attrs.evolve(batch, source=self.id)
        ok = self.host.pipeline.try_submit(batch)
        if ok:
            self.counters["batches_out"] += 1
            self.counters["readings_out"] += len(batch)
        return ok

    def dead_letter(self, payload: bytes, *, source: str, error: str | BaseException, device: str | None = None,
                    at: float | None = None, context: str = "") -> None:
        """Keep a received message that could not be turned into readings in the dead-letter table.

        Stores the raw `payload` with `source` (where it came from, e.g. the MQTT topic), the
        `error` text, the `device` if known, this entry's id and `at` (default: now) in the
        site's WAL file, as a dead letter of kind `ingress` (`sitegate dlq list`), with `context`:
        anything else the entry needs to decode it again (see on_redecode). Returns at
        once: rows are written by the WAL's writer in its next group commit, which happens
        before anything the caller commits afterwards. The table keeps the newest ones within a
        cap (docs/delivery.md). Counting and reporting the failure stays the adapter's job.
        """
        plane = self.host.services.get("dataplane")
        if plane is None:
            self.log.warning("dead letter from %s not stored (the site has no data plane): %s", source, error)
            return
        plane.dead_letter_ingress(self.id, payload, source=source, error=str(error), device=device, at=at,
                                  context=context)

    def on_redecode(self, fn: Redecoder) -> None:
        """Let `sitegate dlq replay` send this entry's ingress dead letters through its current mapping.

        ``await fn(letters)`` gets IngressDeadLetters this entry stored and must decode each as
        if it had just arrived (timestamps from the payload, else `received_at`), publish the
        readings, and return once they are committed, with one result per letter, in order:
        None when it decoded (the dead letter is then deleted), or the error text when it still
        does not (it stays, with that error). It must not dead-letter them again. Call from
        setup_entry; it lasts until the entry unloads. An entry without it leaves its dead
        letters where they are, and `dlq replay` says so.
        """
        self.redecoder = fn

    async def dead_letters_committed(self) -> None:
        """Return once every dead letter handed to `dead_letter` so far is committed (before
        acknowledging the message to its sender, when nothing else of it was committed)."""
        plane = self.host.services.get("dataplane")
        if plane is not None:
            await plane.flush_dead_letters()

    def emit(self, kind: str, *, device: str | None = None, point: str | None = None,
             severity: Severity = Severity.INFO, message: str = "", **data: Any) -> None:
        """Raise an event on the site's event bus (shown to WebSocket subscribers, logged)."""
        self.host.events.emit(Event(kind, self.id, device, point, severity, message, data))

    def declare_device(self, info: "DeviceInfo") -> None:
        """Tell the site about a device this entry owns and its points (units, tags, writable, restricted).

        Call from setup_entry (again whenever it changes). Twins, routes'
        `tags` and the privacy guardrail read it.
        """
        self.host.devices.declare(info)

    def device_name(self, device: str | None = None) -> str:
        """The site-wide device name: ``<entry id>`` or ``<entry id>.<device>``."""
        return self.id if not device else f"{self.id}.{device}"

    # --- for the core ----------------------------------------------------------
    def _set_state(self, state: EntryState, reason: str = "") -> None:
        if state is self.state and reason == self.reason:
            return
        old, self.state, self.reason, self.state_since = self.state, state, reason, time.time()
        troubled = (EntryState.SETUP_RETRY, EntryState.SETUP_ERROR, EntryState.MIGRATION_ERROR, EntryState.FAILED_UNLOAD)
        level = logging.WARNING if state in troubled else logging.INFO
        self.log.log(level, "entry %s: %s -> %s%s", self.id, old, state, f" ({reason})" if reason else "")
        self.host.events.emit(Event(
            "entry.state", self.id, severity=Severity.WARNING if level == logging.WARNING else Severity.INFO,
            message=reason, data={"entry": self.id, "domain": self.domain, "from": old.label, "state": state.label,
                                  "recoverable": state.recoverable, "reason": reason}))

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id, "domain": self.domain, "name": self.spec.name or self.id,
            "state": self.state.label, "recoverable": self.state.recoverable, "reason": self.reason,
            "since": self.state_since, "retries": self.retries,
            "version": self.integration.manifest.version, "counters": dict(self.counters),
        }


def _is_only(exc: BaseException, kind: type[BaseException]) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return all(_is_only(e, kind) for e in exc.exceptions)
    return isinstance(exc, kind)


def _first(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _describe(exc: BaseException) -> str:
    exc = _first(exc)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class EntryRunner:
    """Supervises one entry: setup, retries with backoff, running, unload."""

    def __init__(self, ctx: EntryContext, *, backoff: list[float], jitter: float, unload_timeout: float):
        self.ctx = ctx
        self.backoff = backoff
        self.jitter = jitter
        self.unload_timeout = unload_timeout
        self.scope: trio.CancelScope | None = None
        self.done = trio.Event()
        self.loaded = trio.Event()   # set the first time the entry reaches loaded (or gives up)

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        ctx = self.ctx
        current_entry.set(ctx.id)
        self.scope = trio.CancelScope()
        task_status.started(self)
        delays = backoff_delays(self.backoff, self.jitter)
        try:
            with self.scope:
                while True:
                    outcome = await self._attempt()
                    if outcome == "retry":
                        ctx.retries += 1
                        delay = next(delays)
                        ctx.reason = f"{ctx.reason}; retry {ctx.retries} in {delay:.1f} s"
                        self.loaded.set()
                        await trio.sleep(delay)
                        continue
                    # setup_error / migration_error: stay there until reloaded or unloaded.
                    self.loaded.set()
                    await trio.sleep_forever()
        finally:
            self.loaded.set()
            self.done.set()

    async def _attempt(self) -> str:
        ctx = self.ctx
        setup = ctx.integration.hook("setup_entry")
        ctx._set_state(EntryState.SETUP_IN_PROGRESS)
        ctx._cleanups = []
        try:
            async with trio.open_nursery() as nursery:
                ctx._nursery = nursery
                if setup is not None:
                    await setup(entry=ctx)
                await self._attach_kinds()
                ctx._set_state(EntryState.LOADED)
                self.loaded.set()
                # The entry now lives as long as its tasks; with none, it stays loaded.
                nursery.start_soon(trio.sleep_forever, name=f"{ctx.id}:alive")
        except trio.Cancelled:
            raise
        except BaseException as exc:  # noqa: BLE001 - a plugin may raise anything; the site must live on
            if isinstance(exc, (KeyboardInterrupt, SystemExit)) or _contains_cancelled(exc):
                raise
            await self._run_cleanups()
            ctx._nursery = None
            if _is_only(exc, EntryError):
                ctx._set_state(EntryState.SETUP_ERROR, _describe(exc))
                return "error"
            if _is_only(exc, MigrationError):
                ctx._set_state(EntryState.MIGRATION_ERROR, _describe(exc))
                return "error"
            was_loaded = ctx.state is EntryState.LOADED
            if was_loaded:
                ctx.counters["task_failures"] += 1
            if not _is_only(exc, EntryNotReady):
                ctx.log.error("entry %s %s: %s", ctx.id, "failed while running" if was_loaded else "setup failed",
                              _describe(exc), exc_info=_first(exc))
            ctx._set_state(EntryState.SETUP_RETRY, _describe(exc))
            return "retry"
        return "retry"  # the nursery ended without error only if cancelled; treat as retry

    async def _attach_kinds(self) -> None:
        ctx = self.ctx
        integ = ctx.integration
        if "sink" in integ.manifest.kinds and integ.hook("sink_factory"):
            sink = integ.hook("sink_factory")(entry=ctx)
            ctx.data["sink"] = sink
            ctx.host.attach_sink(ctx, sink)
        if "update_handler" in integ.manifest.kinds and integ.hook("update_handler"):
            ctx.data["update_handler"] = integ.hook("update_handler")(entry=ctx)

    async def _run_cleanups(self) -> None:
        ctx = self.ctx
        ctx.host.detach_sink(ctx)
        ctx.redecoder = None
        while ctx._cleanups:
            cb = ctx._cleanups.pop()
            try:
                result = cb()
                if inspect.isawaitable(result):
                    with trio.move_on_after(self.unload_timeout) as cs:
                        cs.shield = True
                        await result
            except Exception as exc:  # noqa: BLE001
                ctx.log.warning("entry %s: cleanup %r raised %s", ctx.id, cb, _describe(exc))

    async def unload(self) -> bool:
        """Unload: the integration's unload_entry, cancel the entry's tasks, run cleanups. True if clean."""
        ctx = self.ctx
        ok = True
        was_loaded = ctx.state is EntryState.LOADED
        ctx._set_state(EntryState.UNLOAD_IN_PROGRESS)
        unload = ctx.integration.hook("unload_entry")
        if unload is not None and was_loaded:
            with trio.move_on_after(self.unload_timeout) as cs:
                try:
                    await unload(entry=ctx)
                except Exception as exc:  # noqa: BLE001
                    ok = False
                    ctx._set_state(EntryState.FAILED_UNLOAD, _describe(exc))
            if cs.cancelled_caught:
                ok = False
                ctx._set_state(EntryState.FAILED_UNLOAD, f"unload_entry took longer than {self.unload_timeout:g} s")
        if self.scope is not None:
            self.scope.cancel()
        await self.done.wait()
        with trio.CancelScope(shield=True):
            await self._run_cleanups()
        ctx._nursery = None
        if ok:
            ctx._set_state(EntryState.NOT_LOADED)
        return ok


def _contains_cancelled(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return any(_contains_cancelled(e) for e in exc.exceptions)
    return isinstance(exc, trio.Cancelled)
