"""Live readings and events to many WebSocket subscribers, each message serialised once.

Readings: the pipeline tap only remembers the newest batch per device (O(1) per
batch); a fan-out task coalesces them per group of identical subscriptions at the
group's maximum rate and serialises one message body for the whole group.
Events: serialised once per event for every subscriber whose kind globs match.
"""

from __future__ import annotations

import fnmatch
import json
import math
from typing import TYPE_CHECKING, Any

import trio

from ..model import Batch, Event
from .frames import deflate_frame, text_frame

if TYPE_CHECKING:  # pragma: no cover
    from ..host import SiteHost
    from .connection import Connection


def _dumps(obj: Any) -> str:
    try:
        return json.dumps(obj, separators=(",", ":"), allow_nan=False, default=str)
    except ValueError:   # NaN/Infinity are not JSON: browsers refuse the whole message
        return json.dumps(_finite(obj), separators=(",", ":"), default=str)


def _finite(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, (list, tuple)):
        return [_finite(x) for x in obj]
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    return obj


def frame(sub_id: int, body: str) -> str:
    # The envelope around an already serialised body: only the id differs per subscriber.
    return '{"id":%d,"type":"event","event":%s}' % (sub_id, body)


class _Globs:
    """Glob matching with a per-name cache (device and point names repeat forever)."""

    def __init__(self, patterns: tuple[str, ...]):
        self.patterns = patterns
        self.any = "*" in patterns
        self._cache: dict[str, bool] = {}

    def __call__(self, name: str) -> bool:
        if self.any:
            return True
        hit = self._cache.get(name)
        if hit is None:
            hit = self._cache[name] = any(fnmatch.fnmatchcase(name, p) for p in self.patterns)
            if len(self._cache) > 100_000:
                self._cache.clear()
        return hit


class _Group:
    def __init__(self, devices: tuple[str, ...], points: tuple[str, ...], rate: float):
        self.device_ok = _Globs(devices)
        self.point_ok = _Globs(points)
        self.period = 1.0 / rate
        self.members: dict[tuple[int, int], tuple["Connection", int]] = {}
        self.pending: dict[tuple[str, str], tuple[Any, float, int]] = {}
        self.next_at = 0.0

    def take(self, batches: list[Batch]) -> None:
        pending, dok, pok = self.pending, self.device_ok, self.point_ok
        for b in batches:
            d = b.device
            if not dok(d):
                continue
            q = b.quality or (0,) * len(b.points)
            if pok.any:
                for p, v, t, qq in zip(b.points, b.values, b.timestamps, q):
                    pending[(d, p)] = (v, t, qq)
            else:
                for p, v, t, qq in zip(b.points, b.values, b.timestamps, q):
                    if pok(p):
                        pending[(d, p)] = (v, t, qq)

    def flush(self) -> int:
        if not self.pending:
            return 0
        # Grouped by device, timestamps to the millisecond: bytes on the wire are most of the
        # fan-out's cost (each client's copy goes through the kernel), so keep them few.
        readings: dict[str, dict[str, list]] = {}
        for (d, p), (v, t, q) in self.pending.items():
            per = readings.get(d)
            if per is None:
                per = readings[d] = {}
            per[p] = [v, round(t, 3), q]
        self.pending = {}
        body = _dumps({"kind": "readings", "readings": readings})
        # Most clients use the same subscription id: each distinct frame is built (and
        # compressed) once, then written as is to every client of that kind.
        frames: dict[tuple[int, str], str | bytes] = {}
        for conn, sub_id in list(self.members.values()):
            key = (sub_id, conn.frame_mode)
            out = frames.get(key)
            if out is None:
                text = frame(sub_id, body)
                mode = conn.frame_mode
                out = frames[key] = deflate_frame(text) if mode == "deflate" else \
                    text_frame(text) if mode == "raw" else text
            conn.send(out)
        return len(self.members)


class ReadingsHub:
    """Fan-out of live readings. `run()` lives in the API server's nursery."""

    def __init__(self, host: "SiteHost"):
        self.host = host
        self.groups: dict[tuple, _Group] = {}
        self._dirty: dict[tuple[str, int], Batch] = {}
        self._remove_tap = None
        self._wake = trio.Event()
        self._initial: list[tuple["Connection", int, _Group]] = []    # new subscribers owed a snapshot
        self.messages = 0

    def tap(self, batch: Batch) -> None:
        # Hot path: one dict write. Keyed by the points list object: a producer that reuses it
        # gets coalesced here; one that does not still gets every batch (the key keeps it alive).
        self._dirty[(batch.device, id(batch.points))] = batch

    def subscribe(self, conn: "Connection", sub_id: int, devices: list[str], points: list[str], rate: float):
        key = (tuple(devices), tuple(points), float(rate))
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = _Group(*key)
        group.members[(conn.number, sub_id)] = (conn, sub_id)
        self._initial.append((conn, sub_id, group))
        if self._remove_tap is None:
            self._dirty = {}
            self._remove_tap = self.host.pipeline.add_tap(self.tap)
        self._wake.set()

        def remove() -> None:
            group.members.pop((conn.number, sub_id), None)
            if not group.members:
                self.groups.pop(key, None)
            if not self.groups and self._remove_tap is not None:
                self._remove_tap()
                self._remove_tap = None
                self._dirty = {}
        return remove

    async def run(self) -> None:
        while True:
            if not self.groups:
                self._wake = trio.Event()
                await self._wake.wait()
            tick = min(g.period for g in self.groups.values()) if self.groups else 0.1
            await trio.sleep(max(0.01, tick / 2))
            if self._initial:
                self._send_initial()
            batches = list(self._dirty.values())
            self._dirty = {}
            now = trio.current_time()
            for group in list(self.groups.values()):
                if batches:
                    group.take(batches)
                if now >= group.next_at and group.pending:
                    self.messages += group.flush()
                    group.next_at = now + group.period


    def _send_initial(self) -> None:
        # A new subscriber first gets the newest value of every matching point, so points that
        # change rarely (deadbands, setpoints) show at once instead of at their next change.
        initial, self._initial = self._initial, []
        latest = self.host.pipeline.latest
        for conn, sub_id, group in initial:
            if (conn.number, sub_id) not in group.members:
                continue                                   # unsubscribed meanwhile
            snap = _Group(group.device_ok.patterns, group.point_ok.patterns, 1.0)
            snap.pending = {k: v for k, v in latest.items() if group.device_ok(k[0]) and group.point_ok(k[1])}
            snap.members = {(conn.number, sub_id): (conn, sub_id)}
            self.messages += snap.flush()


class EventFanout:
    """Event subscriptions: one bus callback, each event serialised at most once."""

    def __init__(self, host: "SiteHost"):
        self.subs: dict[tuple[int, int], tuple["Connection", int, _Globs]] = {}
        self.remove = host.events.add_callback(self.on_event)

    def subscribe(self, conn: "Connection", sub_id: int, kinds: list[str]):
        key = (conn.number, sub_id)
        self.subs[key] = (conn, sub_id, _Globs(tuple(kinds)))
        return lambda: self.subs.pop(key, None)

    def on_event(self, event: Event) -> None:
        if not self.subs:
            return
        body = None
        kind = event.kind
        for conn, sub_id, ok in list(self.subs.values()):
            if ok(kind):
                if body is None:
                    body = _dumps(event.to_json())
                conn.send(frame(sub_id, body))
