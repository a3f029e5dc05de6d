"""Device registry and twins: what the site knows about each field device, kept in SQLite.

Identity comes from adapters (host.devices, DeviceInfo); liveness from a pipeline
tap (one dict write per batch) checked by a heartbeat task; alarms from `alert`
events; config drift from desired vs reported versions. `<state_dir>/twins.db`
keeps twins across restarts, plus the audit log of device commands.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from .model import Batch, Event, Severity

if TYPE_CHECKING:  # pragma: no cover
    from .host import SiteHost

log = logging.getLogger(__name__)

_IDENTITY = ("entry", "name", "model", "manufacturer", "hw_version", "fw_version", "via_device")
_SCHEMA = [
    "CREATE TABLE IF NOT EXISTS twins (id TEXT PRIMARY KEY, entry TEXT, name TEXT, model TEXT, manufacturer TEXT, "
    "hw_version TEXT, fw_version TEXT, via_device TEXT, desired_config TEXT, reported_config TEXT, "
    "first_seen REAL, last_seen REAL, online INTEGER)",
    "CREATE TABLE IF NOT EXISTS alarms (device TEXT, point TEXT, level TEXT, severity TEXT, message TEXT, "
    "since REAL, PRIMARY KEY (device, point))",
    "CREATE TABLE IF NOT EXISTS audit (ts REAL, who TEXT, role TEXT, device TEXT, action TEXT, point TEXT, "
    "value TEXT, status TEXT, detail TEXT)",
]


class Twin:
    __slots__ = ("id", "entry", "name", "model", "manufacturer", "hw_version", "fw_version", "via_device",
                 "desired_config", "reported_config", "first_seen", "last_seen", "online", "interval", "alarms")

    def __init__(self, device_id: str, **kw: Any):
        self.id = device_id
        for f in _IDENTITY:
            setattr(self, f, kw.get(f) or ("" if f != "via_device" else None))
        self.desired_config: str | None = kw.get("desired_config")
        self.reported_config: str | None = kw.get("reported_config")
        self.first_seen: float | None = kw.get("first_seen")
        self.last_seen: float | None = kw.get("last_seen")
        self.online: bool | None = None          # unknown until it reports (or misses) this run
        self.interval: float | None = None       # its usual time between batches, learnt
        self.alarms: dict[str, dict[str, Any]] = {}

    def to_json(self) -> dict[str, Any]:
        out = {f: getattr(self, f) for f in ("id",) + _IDENTITY}
        drift = self.desired_config is not None and self.desired_config != self.reported_config
        out.update(desired_config=self.desired_config, reported_config=self.reported_config, drift=drift,
                   first_seen=self.first_seen, last_seen=self.last_seen, online=bool(self.online),
                   interval=self.interval, alarms=sorted(self.alarms.values(), key=lambda a: a["since"]))
        return out


class Twins:
    """The registry. Run `run()` in a nursery; `tap` and `on_event` are attached by `attach()`."""

    def __init__(self, host: "SiteHost", *, missed_intervals: int = 3, tick: float = 1.0,
                 min_offline_after: float = 2.0, path: Path | None = None):
        self.host = host
        self.missed_intervals = missed_intervals
        self.tick = tick
        self.min_offline_after = min_offline_after
        self.path = Path(path or host.state_dir / "twins.db")
        self.twins: dict[str, Twin] = {}
        self._seen: dict[str, float] = {}      # device -> arrival time of its newest batch (the tap writes it)
        self._count: dict[str, int] = {}
        self._dirty = False
        self._removers: list[Any] = []
        self._load()

    # --- storage -------------------------------------------------------------------------------
    def _db(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=5)
        db.execute("PRAGMA journal_mode=WAL")
        return db

    def _load(self) -> None:
        with self._db() as db:
            for stmt in _SCHEMA:
                db.execute(stmt)
            cols = [c[1] for c in db.execute("PRAGMA table_info(twins)")]
            for row in db.execute("SELECT * FROM twins"):
                rec = dict(zip(cols, row))
                device = rec.pop("id")
                self.twins[device] = Twin(device, **rec)
            for device, point, level, severity, message, since in db.execute("SELECT * FROM alarms"):
                if device in self.twins:
                    self.twins[device].alarms[point] = {"point": point, "level": level, "severity": severity,
                                                        "message": message, "since": since}

    def _rows(self) -> tuple[list[tuple], list[tuple]]:
        twins = [(t.id, t.entry, t.name, t.model, t.manufacturer, t.hw_version, t.fw_version, t.via_device,
                  t.desired_config, t.reported_config, t.first_seen, t.last_seen, int(bool(t.online)))
                 for t in self.twins.values()]
        alarms = [(t.id, a["point"], a["level"], a["severity"], a["message"], a["since"])
                  for t in self.twins.values() for a in t.alarms.values()]
        return twins, alarms

    def _write(self, twins: list[tuple], alarms: list[tuple]) -> None:
        with self._db() as db:
            db.executemany("INSERT OR REPLACE INTO twins VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", twins)
            db.execute("DELETE FROM alarms")
            db.executemany("INSERT INTO alarms VALUES (?,?,?,?,?,?)", alarms)

    async def flush(self) -> None:
        """Write the twins to SQLite (off the trio thread) if anything changed."""
        if not self._dirty:
            return
        self._dirty = False
        rows = self._rows()
        await trio.to_thread.run_sync(self._write, *rows)

    async def audit(self, who: str, role: str, device: str, action: str, point: str | None, value: Any,
                    status: str, detail: str) -> None:
        """Record one device command and how it ended (the audit log)."""
        row = (time.time(), who, role, device, action, point, repr(value), status, detail)

        def write() -> None:
            with self._db() as db:
                db.execute("INSERT INTO audit VALUES (?,?,?,?,?,?,?,?,?)", row)
        await trio.to_thread.run_sync(write)

    def audit_log(self, limit: int = 100) -> list[dict[str, Any]]:
        with self._db() as db:
            rows = db.execute("SELECT * FROM audit ORDER BY ts DESC LIMIT ?", (limit,)).fetchall()
        keys = ("ts", "who", "role", "device", "action", "point", "value", "status", "detail")
        return [dict(zip(keys, r)) for r in rows]

    # --- inputs --------------------------------------------------------------------------------
    def attach(self) -> None:
        self._removers = [self.host.pipeline.add_tap(self.tap), self.host.events.add_callback(self.on_event)]
        for info in list(self.host.devices.devices.values()):
            self._declare(info)

    def detach(self) -> None:
        for remove in self._removers:
            remove()
        self._removers = []

    def tap(self, batch: Batch) -> None:
        # On the ingestion path: two dict writes per batch, nothing per reading.
        d = batch.device
        self._seen[d] = time.time()
        self._count[d] = self._count.get(d, 0) + 1

    def on_event(self, event: Event) -> None:
        if event.kind == "device.declared" and event.device:
            info = self.host.devices.devices.get(event.device)
            if info is not None:
                self._declare(info)
        elif event.kind == "alert" and event.device:
            self._alert(event)

    def _twin(self, device: str) -> Twin:
        twin = self.twins.get(device)
        if twin is None:
            twin = self.twins[device] = Twin(device, entry=device.split(".", 1)[0])
            self._dirty = True
        return twin

    def _declare(self, info: Any) -> None:
        twin = self._twin(info.id)
        for f in _IDENTITY:
            value = getattr(info, f)
            if value is not None and value != "" and getattr(twin, f) != value:
                setattr(twin, f, value)
                self._dirty = True

    def _alert(self, event: Event) -> None:
        twin = self._twin(event.device)  # type: ignore[arg-type]
        point = event.point or ""
        level = (event.data or {}).get("level")
        if level in (None, "normal", "ok") and event.severity is Severity.INFO:
            if twin.alarms.pop(point, None) is not None:
                self._dirty = True
            return
        twin.alarms[point] = {"point": point, "level": level or event.severity.name.lower(),
                              "severity": event.severity.name.lower(), "message": event.message,
                              "since": twin.alarms.get(point, {}).get("since", event.ts)}
        self._dirty = True

    def report(self, device: str, *, fw_version: str | None = None, hw_version: str | None = None,
               config_version: str | None = None) -> None:
        """An adapter or update handler reports what the device runs now; a change raises `device.reported`."""
        twin = self._twin(device)
        changed = {f: v for f, v in (("fw_version", fw_version), ("hw_version", hw_version),
                                     ("reported_config", config_version)) if v is not None and getattr(twin, f) != v}
        if not changed:
            return
        for f, v in changed.items():
            setattr(twin, f, v)
        self._dirty = True
        drift = twin.desired_config is not None and twin.desired_config != twin.reported_config
        self.host.events.emit(Event("device.reported", twin.entry or "core", twin.id,
                                    message=", ".join(f"{f} {v}" for f, v in changed.items()),
                                    data={"device": twin.id, **changed, "drift": drift}))

    def set_desired(self, device: str, config_version: str) -> Twin:
        """The config version the device should run (an admin, or a config rollout's step); a
        change raises `device.desired`, with the drift it leaves until the device reports it."""
        twin = self._twin(device)
        if twin.desired_config != config_version:
            twin.desired_config = config_version
            self._dirty = True
            drift = twin.reported_config != config_version
            self.host.events.emit(Event("device.desired", twin.entry or "core", twin.id,
                                        message=f"desired config {config_version}" + (
                                            f" (reports {twin.reported_config})" if drift else ""),
                                        data={"device": twin.id, "desired_config": config_version,
                                              "reported_config": twin.reported_config, "drift": drift}))
        return twin

    # --- liveness --------------------------------------------------------------------------------
    def offline_after(self, twin: Twin) -> float:
        interval = twin.interval or self.tick
        return max(self.missed_intervals * interval, self.min_offline_after)

    def check(self, now: float, elapsed: float) -> None:
        """One heartbeat: learn intervals, mark devices online/offline, raise events on changes."""
        counts, self._count = self._count, {}
        for device, n in counts.items():
            twin = self._twin(device)
            # Batches per tick give the device's usual interval; smoothed so one burst does not
            # make a slow device look fast (which would then mark it offline too early).
            sample = elapsed / n
            twin.interval = sample if twin.interval is None else max(sample, 0.8 * twin.interval + 0.2 * sample)
            if twin.first_seen is None:
                twin.first_seen = now
        for device, seen in self._seen.items():
            self._twin(device).last_seen = seen
        for twin in self.twins.values():
            seen = self._seen.get(twin.id)
            alive = seen is not None and now - seen <= self.offline_after(twin)
            if twin.online is None and not alive and seen is None:
                # Known from an earlier run or declared, never heard this run: offline once a grace passed.
                if now - self.host.started_at < self.offline_after(twin):
                    continue
            if alive != twin.online:
                was = twin.online
                twin.online = alive
                self._dirty = True
                if was is None and alive:
                    kind, sev, msg = "device.online", Severity.INFO, "reporting"
                elif alive:
                    kind, sev, msg = "device.online", Severity.INFO, "reporting again"
                else:
                    missed = f"no readings for {now - seen:.1f} s" if seen else "no readings since start"
                    kind, sev, msg = "device.offline", Severity.WARNING, \
                        f"{missed} (missed {self.missed_intervals} intervals of {twin.interval or self.tick:.2f} s)"
                self.host.events.emit(Event(kind, twin.entry or "core", twin.id, severity=sev, message=msg,
                                            data={"device": twin.id, "online": alive, "last_seen": seen}))

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        self.attach()
        task_status.started(self)
        last = trio.current_time()
        flush_at = last
        try:
            while True:
                await trio.sleep(self.tick)
                now_t = trio.current_time()
                self.check(time.time(), now_t - last)
                last = now_t
                if now_t >= flush_at:
                    flush_at = now_t + 2.0
                    await self.flush()
        finally:
            self.detach()
            with trio.CancelScope(shield=True):
                self._dirty = True
                await self.flush()

    # --- questions ---------------------------------------------------------------------------------
    def list(self, entry: str | None = None) -> list[dict[str, Any]]:
        return [t.to_json() for t in sorted(self.twins.values(), key=lambda t: t.id)
                if entry is None or t.entry == entry]

    def get(self, device: str) -> dict[str, Any] | None:
        twin = self.twins.get(device)
        if twin is None:
            return None
        out = twin.to_json()
        latest = self.host.pipeline.latest_of(device)
        points: dict[str, Any] = {}
        declared = self.host.devices.devices.get(device)
        for p in (declared.points if declared else ()):
            points[p.name] = {"unit": p.unit, "datatype": p.datatype, "writable": p.writable,
                              "value": None, "ts": None, "quality": None}
        for name, (value, ts, quality) in latest.items():
            points.setdefault(name, {}).update(value=value, ts=ts, quality=int(quality))
        out["points"] = points
        return out
