"""The `wasm` processor: a route step that runs a signed WebAssembly module on each batch.

Maps (device, point) to dense ids, lays the batch out for the module (abi.py), runs it
under budgets (runtime.py) and turns its output columns back into a Batch and its
events into `alert` events. Failures are per batch; `max_failures` in a row stop the
module and raise `wasm.failed`. A `shadow` module runs beside it (shadow.py).
"""

from __future__ import annotations

import logging
from array import array
from typing import Any, Sequence

import attrs

from sitegate.model import Batch, Event, Severity
from sitegate.plugins import ProcessorContext
from sitegate.structure import Duration

from . import abi
from .runtime import Budgets, ModuleFailure, Sandbox
from .shadow import Shadow, ShadowParams
from .sources import load_module, warn_unsigned

log = logging.getLogger(__name__)


def _positive(_, attribute, value):
    if not value > 0:
        raise ValueError(f"{attribute.name}: expected a number > 0, got {value!r}")


def _one_of(*choices):
    def check(_, attribute, value):
        if value not in choices:
            raise ValueError(f"{attribute.name}: expected one of {', '.join(choices)}, got {value!r}")
    return check


def check_source(where: str, module: str | None, version: str | None, module_path: str | None) -> None:
    if (module is None) == (module_path is None):
        raise ValueError(f"{where}: give `module: <publisher>/<name>` with `version:` (signed), or `module_path:` "
                         "with `unsigned_dev: true` (a local file at your desk), not both")
    if module is not None and not version:
        raise ValueError(f"{where}: module {module!r} needs an exact `version:` (pinned, e.g. \"1.0.0\")")


@attrs.frozen
class WasmParams:
    """A route step `{wasm: {...}}`; see docs/wasm-processors.md."""

    module: str | None = None                 # <publisher>/<name> in the signed registry
    version: str | None = None                # exact version: pinned
    module_path: str | None = None            # local .wasm/.wat, only with unsigned_dev
    unsigned_dev: bool = False
    config: dict[str, Any] = attrs.Factory(dict)
    fuel: int = attrs.field(default=10_000_000, validator=_positive)
    max_pages: int = attrs.field(default=256, validator=_positive)
    max_wall: Duration = attrs.field(default=Duration(0.05), validator=_positive)
    max_failures: int = attrs.field(default=3, validator=_positive)
    on_failure: str = attrs.field(default="drop", validator=_one_of("drop", "pass"))
    max_points: int = attrs.field(default=1024, validator=_positive)
    wasi: bool = False
    shadow: ShadowParams | None = None

    def __attrs_post_init__(self):
        if self.version is not None and not isinstance(self.version, str):
            object.__setattr__(self, "version", str(self.version))   # YAML reads 1.0 as a number
        check_source("wasm", self.module, self.version, self.module_path)

    @property
    def budgets(self) -> Budgets:
        return Budgets(fuel=int(self.fuel), max_pages=int(self.max_pages), wall=float(self.max_wall))


class PointIds:
    """Dense ids for (device, point), in order of first appearance, at most `limit`."""

    def __init__(self, limit: int):
        self.limit = limit
        self.by_device: dict[str, dict[str, int]] = {}
        self.names: list[str] = []
        self.devices: list[str] = []
        self._last: dict[str, tuple[Sequence[str], bytes]] = {}   # device -> (points column, its ids)

    def column(self, device: str, points: Sequence[str]) -> bytes | None:
        """The i32 id column for `points`, or None when a new point would pass `limit`."""
        last = self._last.get(device)
        if last is not None and (last[0] is points or last[0] == points):
            return last[1]      # adapters mostly send the same points each batch
        ids = self.by_device.get(device)
        if ids is None:
            ids = self.by_device[device] = {}
        get = ids.get
        col = [get(p) for p in points]
        if None in col:
            for i, p in enumerate(points):
                if col[i] is None:
                    if p not in ids:
                        if len(self.names) >= self.limit:
                            return None
                        ids[p] = len(self.names)
                        self.names.append(p)
                        self.devices.append(device)
                    col[i] = ids[p]
        raw = array("i", col).tobytes()
        self._last[device] = (points if isinstance(points, tuple) else list(points), raw)
        return raw


class WasmProcessor:
    """One route step running one module instance (and maybe a shadow)."""

    def __init__(self, params: WasmParams, ctx: ProcessorContext):
        self.params = params
        self.ctx = ctx
        loaded = load_module(ctx, module=params.module, version=params.version, module_path=params.module_path,
                             unsigned_dev=params.unsigned_dev, where="wasm")
        self.label = loaded.label
        try:
            self.sandbox = Sandbox(loaded.data, loaded.label, budgets=params.budgets, config=params.config,
                                   max_points=params.max_points, wasi=params.wasi)
        except ModuleFailure as exc:
            raise ValueError(f"wasm: module {loaded.label} cannot start: {exc}") from None
        if params.wasi:
            log.warning("route %s: module %s may use WASI (wasi: true): no folders, env or args are given",
                        ctx.route, self.label)
        self.ids = PointIds(params.max_points)
        self.state = "running"
        self.batches = self.readings_in = self.readings_out = self.events = 0
        self.failures = self.consecutive = self.skipped = self.unmapped = 0
        self.failures_by_reason: dict[str, int] = {}
        self.last_failure = ""
        self.shadow = Shadow(params, ctx, self) if params.shadow is not None else None
        warn_unsigned(getattr(ctx, "route", "?"), loaded, self.shadow.loaded if self.shadow else None)

    # -- the hot path ----------------------------------------------------------------------
    def process(self, batch: Batch) -> Batch | None:
        n = len(batch)
        if n == 0:
            return batch
        if self.state != "running":
            self.skipped += n
            return batch if self.params.on_failure == "pass" else None
        ids = self.ids.column(batch.device, batch.points)
        if ids is None:
            return self._process_mapped_only(batch)
        inputs = b"".join((abi.f64_bytes(batch.values), abi.f64_bytes(batch.timestamps), ids,
                           abi.quality_column(batch.quality, n)))
        self.batches += 1
        self.readings_in += n
        try:
            out, events = self.run(self.sandbox, batch, inputs, ids)
        except ModuleFailure as exc:
            self._failed(exc, n)
            out = batch if self.params.on_failure == "pass" else None
            if self.shadow is not None:
                self.shadow.compare(batch, inputs, ids, None, None, active_failed=exc)
            return out
        self.consecutive = 0
        if out is not None:
            self.readings_out += len(out)
        for ev in events:
            self.ctx.emit(ev)
        self.events += len(events)
        if self.shadow is not None:
            self.shadow.compare(batch, inputs, ids, out, events)
        return out

    def run(self, sandbox: Sandbox, batch: Batch, inputs: bytes, ids: bytes) -> tuple[Batch | None, list[Event]]:
        """One call of `sandbox` on `batch`; the output batch (None when empty) and the module's events."""
        n = len(batch)
        out_n, events_n, addr = sandbox.run(n, inputs)
        read = sandbox.read
        events = self._events(batch, read(addr + abi.offsets(n)["events"], abi.EVENT_SIZE * events_n), events_n) \
            if events_n else []
        if out_n == 0:
            return None, events
        o_vals = addr + 8 + 24 * n
        o_ts, o_pts, o_q = o_vals + 8 * n, o_vals + 16 * n, o_vals + 20 * n
        raw_ids = read(o_pts, 4 * out_n)
        if out_n == n and raw_ids == ids:
            points = batch.points         # the usual 1:1 step: same points in the same order
        else:
            points = self._names(batch.device, raw_ids)
        raw_ts = read(o_ts, 8 * out_n)
        in_ts = inputs[8 * n:16 * n]
        if out_n == n and raw_ts == in_ts:
            stamps = batch.timestamps
        else:
            stamps = array("d", raw_ts).tolist()
        raw_q = read(o_q, 4 * out_n)
        if not raw_q.count(0) == len(raw_q):
            quality = array("i", raw_q).tolist()
        else:
            quality = None
        values = array("d", read(o_vals, 8 * out_n)).tolist()
        return Batch(batch.device, points, values, stamps, quality, batch.source), events

    def _names(self, device: str, raw_ids: bytes) -> list[str]:
        names, devices = self.ids.names, self.ids.devices
        known = len(names)
        out = []
        for i in array("i", raw_ids):
            if not 0 <= i < known or devices[i] != device:
                raise ModuleFailure("garbage", f"output point id {i} is not a point of device {device!r}")
            out.append(names[i])
        return out

    def _events(self, batch: Batch, raw: bytes, count: int) -> list[Event]:
        device = batch.device
        now = self.ctx.clock()
        out = []
        for pid, sev, code, value, ts in abi.decode_events(raw, count):
            if not 0 <= sev <= abi.MAX_SEVERITY:
                raise ModuleFailure("garbage", f"event severity {sev} (0 info, 1 warning, 2 critical)")
            point = self._names(device, array("i", [pid]).tobytes())[0]
            out.append(Event("alert", source=self.ctx.route, device=device, point=point, severity=Severity(sev),
                             message=f"{device}/{point} = {value:g}: event {code} from {self.label}",
                             data={"module": self.label, "code": code, "value": value, "reading_ts": ts}, ts=now))
        return out

    def _process_mapped_only(self, batch: Batch) -> Batch | None:
        """More distinct points than max_points: the module never sees the extra ones (counted, said once)."""
        ids = self.ids.by_device.setdefault(batch.device, {})
        keep = [i for i, p in enumerate(batch.points) if p in ids]
        if not self.unmapped:
            self.ctx.emit(Event("wasm.points_exceeded", self.ctx.route, device=batch.device, severity=Severity.WARNING,
                                message=f"{self.label}: more than max_points={self.params.max_points} points; "
                                        "readings of the others are dropped (raise max_points)",
                                data={"module": self.label, "max_points": self.params.max_points}))
        self.unmapped += len(batch) - len(keep)
        return self.process(batch.select(keep)) if keep else None

    # -- failures ----------------------------------------------------------------------------
    def _failed(self, exc: ModuleFailure, n: int) -> None:
        self.failures += 1
        self.consecutive += 1
        self.skipped += n
        self.failures_by_reason[exc.reason] = self.failures_by_reason.get(exc.reason, 0) + 1
        self.last_failure = str(exc)
        log.warning("route %s: module %s stopped on a batch of %d (%d in a row): %s", self.ctx.route, self.label, n,
                    self.consecutive, exc)
        if self.consecutive >= self.params.max_failures:
            self.state = "failed"
            self.ctx.emit(Event(
                "wasm.failed", self.ctx.route, severity=Severity.CRITICAL,
                message=f"route {self.ctx.route}: module {self.label} stopped after {self.consecutive} failed batches "
                        f"in a row ({exc.reason}: {exc.detail}); its batches are now "
                        f"{'passed on unprocessed' if self.params.on_failure == 'pass' else 'dropped'}",
                data={"route": self.ctx.route, "module": self.label, "reason": exc.reason, "detail": exc.detail,
                      "failures": self.failures, "consecutive": self.consecutive}))

    def flush(self, now: float) -> Sequence[Batch]:
        if self.shadow is not None:
            self.shadow.report(now)
        return []

    def stats(self) -> dict[str, Any]:
        """Counters for diagnostics and tests."""
        out = {"module": self.label, "state": self.state, "batches": self.batches, "readings_in": self.readings_in,
               "readings_out": self.readings_out, "events": self.events, "failures": self.failures,
               "consecutive_failures": self.consecutive, "failures_by_reason": dict(self.failures_by_reason),
               "last_failure": self.last_failure, "skipped": self.skipped, "unmapped": self.unmapped,
               "points": len(self.ids.names), "fuel_last_batch": self.sandbox.fuel_used,
               "memory_pages": self.sandbox.memory_pages()}
        if self.shadow is not None:
            out["shadow"] = self.shadow.stats()
        return out


def create(params: WasmParams, ctx: ProcessorContext) -> WasmProcessor:
    return WasmProcessor(params, ctx)
