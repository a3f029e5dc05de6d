"""Silent-failure detectors: the costly failures are the quiet ones.

Each detector raises an event on the bus (and a metric) when something stops
without an error: a device that goes quiet, readings that stop entering the
pipeline, a sink that stops advancing, duplicate replays after a reconnect,
a sensor drifting away from its reference. They read a cheap pipeline tap
(one dict write per batch) and the services' counters, once a second.
"""

from __future__ import annotations

import fnmatch
import logging
import time
from typing import TYPE_CHECKING, Any

import trio

from ..model import Event, Severity
from .snapshot import Metric

if TYPE_CHECKING:  # pragma: no cover
    from ..config.schema import DetectorSettings
    from ..host import SiteHost

log = logging.getLogger(__name__)


class _DeviceClock:
    __slots__ = ("last", "interval", "quiet")

    def __init__(self, now: float):
        self.last = now
        self.interval = 0.0
        self.quiet = False


class _Drift:
    """EWMA of (point - reference) with the configured time constant."""

    def __init__(self, spec: dict[str, Any]):
        self.point = str(spec["point"])            # "device/point"
        self.reference = str(spec["reference"])
        self.max_delta = float(spec.get("max_delta", 2.0))
        from ..structure import parse_duration
        self.window = float(parse_duration(spec.get("window", "10m")))
        self.value: float | None = None
        self.ref: float | None = None
        self.mean: float | None = None
        self.t: float | None = None
        self.drifting = False

    def update(self, now: float) -> None:
        if self.value is None or self.ref is None:
            return
        delta = self.value - self.ref
        if self.mean is None or self.t is None:
            self.mean, self.t = delta, now
            return
        alpha = min(1.0, (now - self.t) / self.window) if self.window > 0 else 1.0
        self.mean += alpha * (delta - self.mean)
        self.t = now


class Detectors:
    def __init__(self, host: "SiteHost", settings: "DetectorSettings", *, tick: float = 1.0):
        self.host = host
        self.settings = settings
        self.tick = tick
        self.devices: dict[str, _DeviceClock] = {}
        self.counts: dict[str, int] = {"device_quiet": 0, "ingestion_stall": 0, "sink_stuck": 0,
                                       "duplicate_replay": 0, "sensor_drift": 0}
        self.drifts = [_Drift(d) for d in settings.drift]
        self._drift_keys: dict[tuple[str, str], list[tuple[_Drift, str]]] = {}
        for d in self.drifts:
            for role, key in (("value", d.point), ("ref", d.reference)):
                dev, _, point = key.rpartition("/")
                self._drift_keys.setdefault((dev, point), []).append((d, role))
        self._drift_devices = {dev for dev, _ in self._drift_keys}
        self._stall_since: float | None = None
        self._stalled = False
        self._last_in = 0
        self._sinks: dict[str, tuple[Any, float]] = {}
        self._stuck: set[str] = set()
        self._replay_seen: dict[str, tuple[float, float]] = {}
        self.sync_lag: dict[str, float] = {}
        self._arrivals: list[tuple[float, float]] = []   # (WAL position, when first seen), one per tick
        host.pipeline.add_tap(self._on_batch)

    # --- the tap: keep it tiny -------------------------------------------------
    def _on_batch(self, batch) -> None:
        now = time.monotonic()
        clock = self.devices.get(batch.device)
        if clock is None:
            self.devices[batch.device] = _DeviceClock(now)
        else:
            gap = now - clock.last
            if gap > 0.001:   # batches of one poll arrive together; only count real gaps
                clock.interval = gap if clock.interval == 0 else 0.8 * clock.interval + 0.2 * gap
                clock.last = now
            if clock.quiet:
                clock.quiet = False
                self._emit("device.resumed", Severity.INFO, f"device {batch.device} is reporting again",
                           device=batch.device)
        if batch.device in self._drift_devices:
            for p, v in zip(batch.points, batch.values):
                for d, role in self._drift_keys.get((batch.device, p), ()):
                    if isinstance(v, (int, float)):
                        setattr(d, role, float(v))
                        d.update(now)

    def _emit(self, kind: str, severity: Severity, message: str, **data: Any) -> None:
        device = data.pop("device", None)
        self.host.events.emit(Event(kind, "detectors", device, data.pop("point", None), severity, message, data))
        if severity >= Severity.WARNING:
            log.warning("%s", message)

    # --- the periodic checks ---------------------------------------------------
    async def run(self) -> None:
        while True:
            await trio.sleep(self.tick)
            self.check(time.monotonic())

    def check(self, now: float) -> None:
        self._check_quiet(now)
        self._check_stall(now)
        self._check_sinks(now)
        self._check_drift()

    def _entry_loaded(self, device: str) -> bool:
        info = self.host.devices.devices.get(device)
        entry_id = info.entry if info else device.split(".", 1)[0]
        runner = self.host.runners.get(entry_id)
        return runner is not None and runner.ctx.state.label == "loaded"

    def _check_quiet(self, now: float) -> None:
        n = self.settings.device_quiet_intervals
        for device, clock in self.devices.items():
            if clock.quiet or clock.interval <= 0:
                continue
            silent = now - clock.last
            if silent > max(n * clock.interval, 2 * self.tick) and self._entry_loaded(device):
                clock.quiet = True
                self.counts["device_quiet"] += 1
                self._emit("device.quiet", Severity.WARNING,
                           f"device {device} has sent nothing for {silent:.1f} s (usually every "
                           f"{clock.interval:.2f} s) while its adapter is loaded",
                           device=device, silent_seconds=round(silent, 2), usual_interval=round(clock.interval, 3))

    def _check_stall(self, now: float) -> None:
        readings = self.host.pipeline.readings_in
        adapters_up = any(r.ctx.state.label == "loaded" and "adapter" in r.ctx.integration.manifest.kinds
                          for r in self.host.runners.values())
        if readings != self._last_in or not adapters_up:
            changed = readings != self._last_in
            self._last_in, self._stall_since = readings, now
            if self._stalled and changed:
                self._stalled = False
                self._emit("ingestion.resumed", Severity.INFO, "readings are entering the pipeline again")
            return
        if self._stall_since is None:
            self._stall_since = now
        stalled_for = now - self._stall_since
        if not self._stalled and stalled_for >= float(self.settings.ingestion_stall):
            self._stalled = True
            self.counts["ingestion_stall"] += 1
            self._emit("ingestion.stall", Severity.CRITICAL,
                       f"no readings entered the pipeline for {stalled_for:.0f} s while adapters are loaded",
                       seconds=round(stalled_for, 1))

    def _sink_status(self) -> dict[str, dict[str, Any]]:
        dataplane = self.host.services.get("dataplane")
        fn = getattr(dataplane, "sink_status", None)
        return fn() if fn else {}

    def _check_sinks(self, now: float) -> None:
        status = self._sink_status()
        self._track_lag(now, status)
        for sink, st in status.items():
            cursor, backlog, state = st.get("cursor"), st.get("backlog", 0), st.get("state", "online")
            last = self._sinks.get(sink)
            if last is None or last[0] != cursor or not backlog or state != "online":
                self._sinks[sink] = (cursor, now)
                if sink in self._stuck and (last is None or last[0] != cursor):
                    self._stuck.discard(sink)
                    self._emit("sink.resumed", Severity.INFO, f"sink {sink} is advancing again", sink=sink)
            elif sink not in self._stuck and now - last[1] >= float(self.settings.sink_stuck):
                self._stuck.add(sink)
                self.counts["sink_stuck"] += 1
                self._emit("sink.stuck", Severity.CRITICAL,
                           f"sink {sink} is online with {backlog} readings waiting but has not advanced for "
                           f"{now - last[1]:.0f} s", sink=sink, backlog=backlog)
            delivered, duplicates = float(st.get("delivered", 0)), float(st.get("duplicates", 0))
            prev = self._replay_seen.get(sink)
            self._replay_seen[sink] = (delivered, duplicates)
            if prev is not None:
                d_del, d_dup = delivered - prev[0], duplicates - prev[1]
                if d_del > 0 and d_dup / d_del > self.settings.replay_ratio:
                    self.counts["duplicate_replay"] += 1
                    self._emit("sink.replay", Severity.WARNING,
                               f"sink {sink} re-delivered {d_dup:.0f} of {d_del:.0f} readings "
                               f"({100 * d_dup / d_del:.0f}%): a replay after a reconnect?", sink=sink,
                               duplicates=d_dup, delivered=d_del)

    def _track_lag(self, now: float, status: dict[str, dict[str, Any]]) -> None:
        # The WAL position (the sum of the newest ids the sinks' cursors go to) when it was first seen,
        # once a tick: a sink's oldest unacknowledged reading is at least as old as the first position
        # past its cursor. (The backlog is a count of records, not a position.)
        if not status:
            return
        head = max(float(st.get("head", float(st.get("cursor", 0)) + float(st.get("backlog", 0))))
                   for st in status.values())
        if not self._arrivals or head > self._arrivals[-1][0]:
            self._arrivals.append((head, now))
        for sink, st in status.items():
            cursor, backlog = float(st.get("cursor", 0)), float(st.get("backlog", 0))
            if backlog <= 0:
                self.sync_lag[sink] = 0.0
                continue
            first = next((t for pos, t in self._arrivals if pos > cursor), now)
            self.sync_lag[sink] = max(0.0, now - first)
        oldest = min((float(st.get("cursor", 0)) for st in status.values()), default=0.0)
        while len(self._arrivals) > 2 and self._arrivals[1][0] <= oldest:
            self._arrivals.pop(0)
        del self._arrivals[:-100_000]   # bounded, whatever happens

    def _check_drift(self) -> None:
        for d in self.drifts:
            if d.mean is None:
                continue
            if not d.drifting and abs(d.mean) > d.max_delta:
                d.drifting = True
                self.counts["sensor_drift"] += 1
                dev, _, point = d.point.rpartition("/")
                self._emit("sensor.drift", Severity.WARNING,
                           f"{d.point} has drifted {d.mean:+.2f} from reference {d.reference} "
                           f"(allowed ±{d.max_delta:g})", device=dev, point=point,
                           delta=round(d.mean, 3), reference=d.reference)
            elif d.drifting and abs(d.mean) < 0.8 * d.max_delta:
                d.drifting = False

    def metrics(self) -> list[Metric]:
        out = [Metric("silent_failures_total", v, {"detector": k}, "counter",
                      "silent failures detected, by detector") for k, v in self.counts.items()]
        quiet = sum(1 for c in self.devices.values() if c.quiet)
        out.append(Metric("devices_quiet", quiet, help="devices currently quiet while their adapter is loaded"))
        known = len(self.devices) or 1
        out.append(Metric("sli_offline_device_ratio", quiet / known,
                          help="SLI: share of known devices that are quiet/offline"))
        for d in self.drifts:
            if d.mean is not None:
                out.append(Metric("sensor_drift_delta", d.mean, {"point": d.point, "reference": d.reference},
                                  help="EWMA of point minus reference"))
        return out
