"""Shadow mode: a candidate module runs on the same batches as the active one; only the active one counts.

The candidate's output is compared with the active output (readings matched by point and
time; differing = missing on one side or further apart than `tolerance`) and its events
with the active events. Differences go out as `processor.shadow_diff` events: at once on
the first difference, then a summary every `report_every`. The candidate's own output and
events never leave the step. `promote_step` is the site-file edit that makes it active.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from typing import TYPE_CHECKING, Any

import attrs

from sitegate.model import Batch, Event, Severity
from sitegate.structure import Duration

from .runtime import ModuleFailure, Sandbox
from .sources import load_module

if TYPE_CHECKING:  # pragma: no cover
    from .processor import WasmParams, WasmProcessor

log = logging.getLogger(__name__)


@attrs.frozen
class ShadowParams:
    """`shadow:` in a wasm step: the candidate module (same budgets as the active one)."""

    module: str | None = None
    version: str | None = None
    module_path: str | None = None
    config: dict[str, Any] | None = None          # default: the active module's config
    tolerance: float = 0.0                         # |a - b| above this is a difference
    report_every: Duration = Duration(10.0)

    def __attrs_post_init__(self):
        if self.version is not None and not isinstance(self.version, str):
            object.__setattr__(self, "version", str(self.version))
        from .processor import check_source
        check_source("wasm.shadow", self.module, self.version, self.module_path)
        if not self.tolerance >= 0:
            raise ValueError(f"tolerance: expected a number >= 0, got {self.tolerance!r}")


def _key_values(batch: Batch | None) -> dict[tuple[str, float], float]:
    if batch is None:
        return {}
    return dict(zip(zip(batch.points, batch.timestamps), batch.values))


def compare_batches(active: Batch | None, candidate: Batch | None, tolerance: float) -> tuple[int, int, float]:
    """(readings compared, readings differing, max |difference| over readings present on both sides)."""
    if active is not None and candidate is not None and len(active) == len(candidate) \
            and active.points == candidate.points and active.timestamps == candidate.timestamps:
        pairs = zip(active.values, candidate.values)      # same readings in the same order: pairwise
        only = 0
        total = len(active)
    else:
        a, c = _key_values(active), _key_values(candidate)
        common = a.keys() & c.keys()
        pairs = ((a[k], c[k]) for k in common)
        only = len(a) + len(c) - 2 * len(common)
        total = len(a.keys() | c.keys())
    differing, worst = only, 0.0
    for x, y in pairs:
        if x == y or (x != x and y != y):
            continue
        d = abs(x - y) if x == x and y == y else math.inf
        if d > worst:
            worst = d
        if d > tolerance:
            differing += 1
    return total, differing, worst


def _event_keys(events: list[Event]) -> Counter:
    return Counter((e.device, e.point, int(e.severity), e.data.get("code"), e.data.get("value")) for e in events)


class Shadow:
    """The candidate beside one WasmProcessor, and what the comparison found so far."""

    def __init__(self, params: "WasmParams", ctx: Any, active: "WasmProcessor"):
        sp: ShadowParams = params.shadow
        self.params = sp
        self.ctx = ctx
        self.active = active
        loaded = load_module(ctx, module=sp.module, version=sp.version, module_path=sp.module_path,
                             unsigned_dev=params.unsigned_dev, where="wasm.shadow")
        self.loaded = loaded
        self.label = loaded.label
        config = params.config if sp.config is None else sp.config
        try:
            self.sandbox = Sandbox(loaded.data, loaded.label, budgets=params.budgets, config=config,
                                   max_points=params.max_points, wasi=params.wasi)
        except ModuleFailure as exc:
            raise ValueError(f"wasm.shadow: module {loaded.label} cannot start: {exc}") from None
        self.batches = self.readings = self.differing = self.differing_events = self.failures = 0
        self.max_abs_diff = 0.0
        self.last_failure = ""
        self._since = self._pending = 0          # batches compared / with differences since the last report
        self._last_report: float | None = None
        self._told_difference = False          # the first difference is reported at once

    def compare(self, batch: Batch, inputs: bytes, ids: bytes, out: Batch | None, events: list[Event] | None, *,
                active_failed: ModuleFailure | None = None) -> None:
        try:
            cand, cand_events = self.active.run(self.sandbox, batch, inputs, ids)
        except ModuleFailure as exc:
            self.failures += 1
            self.last_failure = str(exc)
            self._note(1, 0, 0, 0.0)
            return
        if active_failed is not None:
            return      # nothing to compare against; the active side's failure is counted there
        total, differing, worst = compare_batches(out, cand, self.params.tolerance)
        a_ev, c_ev = _event_keys(events or []), _event_keys(cand_events)
        ev_diff = sum(((a_ev - c_ev) + (c_ev - a_ev)).values())
        self._note(0, total, differing, worst, ev_diff)

    def _note(self, failed: int, total: int, differing: int, worst: float, ev_diff: int = 0) -> None:
        self.batches += 1
        self.readings += total
        self.differing += differing
        self.differing_events += ev_diff
        self.max_abs_diff = max(self.max_abs_diff, worst)
        self._since += 1
        if differing or ev_diff or failed:
            self._pending += 1
            now = self.ctx.clock()
            if not self._told_difference or now - self._last_report >= float(self.params.report_every):
                self._told_difference = True
                self.report(now, force=True)

    def report(self, now: float, *, force: bool = False) -> None:
        """Emit `processor.shadow_diff` with the totals so far (from flush: at most every report_every)."""
        if not self._since:
            return
        if not force and self._last_report is not None and now - self._last_report < float(self.params.report_every):
            return
        found = self.differing or self.differing_events or self.failures
        self.ctx.emit(Event(
            "processor.shadow_diff", self.ctx.route, severity=Severity.WARNING if found else Severity.INFO,
            message=(f"shadow {self.label} vs {self.active.label}: {self.differing} of {self.readings} readings "
                     f"differ (max |diff| {self.max_abs_diff:g}), {self.differing_events} events differ, "
                     f"{self.failures} shadow failures"),
            data=self.stats(), ts=now))
        self._last_report = now
        self._since = self._pending = 0

    def stats(self) -> dict[str, Any]:
        return {"route": self.ctx.route, "active": self.active.label, "shadow": self.label, "batches": self.batches,
                "readings": self.readings, "differing": self.differing, "max_abs_diff": self.max_abs_diff,
                "differing_events": self.differing_events, "shadow_failures": self.failures,
                "last_shadow_failure": self.last_failure}


def promote_step(params: dict[str, Any]) -> dict[str, Any]:
    """The step parameters with the shadow made active: what `sitegate wasm promote` writes.

    `{module: a/m, version: 1.0.0, shadow: {version: 1.1.0}}` -> `{module: a/m, version: 1.1.0}`.
    """
    params = dict(params)
    shadow = params.pop("shadow", None)
    if not isinstance(shadow, dict):
        raise ValueError("promote: this step has no `shadow:` to promote")
    for key in ("module", "version", "module_path"):
        params.pop(key, None)
    for key in ("module", "version", "module_path", "config"):
        if shadow.get(key) is not None:
            params[key] = shadow[key]
    return params
