"""The adapter kind: received messages become batches, acknowledged to the broker only after commit.

Each burst of received messages is decoded, merged per device, handed to the
pipeline (`entry.publish` returns once the readings are committed) and only then
PUBACKed, in the order received. A crash in between makes the broker redeliver.
Another sitegate's uplink (format `sitegate`) keeps its device, timestamps and
sequence numbers, so its msgIds survive the fog hop; repeats are dropped by (device, seqNo).
"""

from __future__ import annotations

import time
from typing import Any

import trio

from sitegate.model import Batch, DeviceInfo, PointInfo, Severity

from .config import MqttConfig, Subscription
from .connection import Connection
from .origins import OriginBook
from .payload import DECODERS, Decoded, MalformedPayload, Mapper, MapperTable

MAX_EVENTS_PER_SECOND = 10      # malformed-payload events; the counters count them all
# Messages handled (committed, then acknowledged) at a time: small enough that the broker's
# window of unacknowledged messages never runs dry while one burst commits.
BURST = 250         # a quarter of the default receive_maximum


class Ingest:
    def __init__(self, entry: Any, conn: Connection, cfg: MqttConfig, origins: OriginBook):
        self.entry = entry
        self.conn = conn
        self.subs: list[tuple[Subscription, Mapper]] = [
            (s, Mapper(s, entry=entry.id, decoders=DECODERS, cache_size=50_000)) for s in cfg.subscribe]
        self.table = MapperTable([(s.filter, m) for s, m in self.subs], cache_size=50_000)
        self.origins = origins
        self._declared: dict[str, set[str]] = {}
        self._next_seq: dict[str, int] = {}
        self._event_window = (0.0, 0)
        self.counters = {"bursts": 0, "messages": 0, "readings": 0, "malformed": 0, "duplicates": 0, "unacked_stale": 0,
                         "redecoded": 0}
        self.last_malformed = ""
        # `sitegate dlq replay`: this entry's dead letters go through the mapping it has now.
        entry.on_redecode(self.redecode)

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        conn = self.conn
        while True:
            received = await conn.receive(BURST)
            await self.handle(received)

    async def handle(self, received: list) -> None:
        """Commit the readings of these messages, then acknowledge them (in order)."""
        entry, conn = self.entry, self.conn
        now = entry.clock()
        malformed = self.counters["malformed"]
        merged: dict[str, list] = {}        # device -> [points, values, ts, quality or None]
        fog: list[Decoded] = []
        lookup = self.table.lookup
        for _, msg in received:
            mapper = lookup(msg.topic)
            try:
                if mapper is None:
                    raise MalformedPayload("no subscription's filter matches this topic")
                decoded = mapper.decode(msg.topic, msg.payload, now)
            except MalformedPayload as exc:
                self._malformed(msg, str(exc), now)
                continue
            self._merge(decoded, merged, fog)
        await self._publish_all(merged, fog)
        if self.counters["malformed"] != malformed:
            await entry.dead_letters_committed()     # acknowledged only once stored, like readings
        self.counters["messages"] += len(received)
        self.counters["bursts"] += 1
        self.counters["unacked_stale"] += conn.ack_many(received)

    async def redecode(self, letters: list) -> list[str | None]:
        """Dead letters of this entry (`sitegate dlq replay`) through the current mapping, as if
        they had just arrived at their receive time: the readings are committed on return; per
        letter None (decoded) or why it still fails (EntryContext.on_redecode)."""
        results: list[str | None] = []
        merged: dict[str, list] = {}
        fog: list[Decoded] = []
        lookup = self.table.lookup
        for dl in letters:
            mapper = lookup(dl.source)
            try:
                if mapper is None:
                    raise MalformedPayload("no subscription's filter matches this topic")
                decoded = mapper.decode(dl.source, dl.payload, dl.received_at)
            except MalformedPayload as exc:
                results.append(str(exc))
                continue
            results.append(None)
            self._merge(decoded, merged, fog)
        await self._publish_all(merged, fog)
        self.counters["redecoded"] += sum(1 for r in results if r is None)
        return results

    def _merge(self, decoded: list[Decoded], merged: dict[str, list], fog: list[Decoded]) -> None:
        """Add one message's readings to `merged` (device -> columns), another sitegate's batches to `fog`."""
        device_name = self.entry.device_name
        for d in decoded:
            if d.origin is not None:
                fog.append(d)
                continue
            device = device_name(d.device)
            cols = merged.get(device)
            if cols is None:
                cols = merged[device] = [[], [], [], None]
            n_before = len(cols[0])
            cols[0].extend(d.points)
            cols[1].extend(d.values)
            cols[2].extend(d.timestamps)
            if d.quality is not None or cols[3] is not None:
                if cols[3] is None:
                    cols[3] = [0] * n_before
                cols[3].extend(d.quality if d.quality is not None else [0] * len(d.points))

    async def _publish_all(self, merged: dict[str, list], fog: list[Decoded]) -> None:
        # Devices are committed concurrently (one WAL group commit instead of one per device);
        # each device's readings stay in arrival order: merged above, or one task per fog device.
        jobs = [(self._publish_merged, (device, cols)) for device, cols in merged.items()]
        by_origin: dict[str, list[Decoded]] = {}
        for d in fog:
            by_origin.setdefault(d.origin.device, []).append(d)   # type: ignore[union-attr]
        jobs += [(self._publish_origins, (ds,)) for ds in by_origin.values()]
        if len(jobs) == 1:
            fn, args = jobs[0]
            await fn(*args)
        elif jobs:
            async with trio.open_nursery() as nursery:
                for fn, args in jobs:
                    nursery.start_soon(fn, *args)

    async def _publish_merged(self, device: str, cols: list) -> None:
        points, values, ts, quality = cols
        self._declare(device, points)
        await self.entry.publish(Batch(device, points, values, ts, quality, self.entry.id))
        self.counters["readings"] += len(points)

    async def _publish_origins(self, decoded: list[Decoded]) -> None:
        for d in decoded:
            await self._publish_origin(d)

    async def _publish_origin(self, d: Decoded) -> None:
        """Another sitegate's batch: keep its device and seqNo (hence its msgIds); drop what we already have."""
        entry = self.entry
        env = d.origin
        assert env is not None
        device = env.device
        pipeline = entry.host.pipeline
        have = pipeline.allocate(device, 0)       # the next number the site would give this device
        start = 0
        if env.seq < have:
            start = min(have - env.seq, len(d.points))
            self.counters["duplicates"] += start
        if start >= len(d.points):
            return
        seq = env.seq + start
        pipeline.seed_sequences({device: seq})
        sl = slice(start, None)
        quality = d.quality[sl] if d.quality is not None else None
        self.origins.note(device, env.site)
        self._declare(device, d.points[sl])
        stamped = await entry.publish(Batch(device, d.points[sl], d.values[sl], d.timestamps[sl], quality, entry.id))
        if stamped.seq != seq:   # someone else numbered this device meanwhile: ids would not be the edge's
            entry.log.warning("device %s: fog numbering diverged (expected seq %d, got %d)", device, seq, stamped.seq)
        self.counters["readings"] += len(d.points) - start

    def _declare(self, device: str, points: list[str]) -> None:
        known = self._declared.get(device)
        new = set(points) - known if known is not None else set(points)
        if not new:
            return
        known = self._declared.setdefault(device, set())
        known.update(new)
        self.entry.declare_device(DeviceInfo(device, self.entry.id, name=device,
                                             points=tuple(PointInfo(p) for p in sorted(known))))

    def _malformed(self, msg: Any, reason: str, now: float) -> None:
        """Count it, keep it in the dead-letter table (committed before this burst is acknowledged:
        the WAL writes in order), and report it (events rate-limited)."""
        self.counters["malformed"] += 1
        self.last_malformed = f"{msg.topic}: {reason}"
        self.entry.dead_letter(msg.payload, source=msg.topic, error=reason, at=now)
        mono = time.monotonic()
        start, n = self._event_window
        if mono - start >= 1.0:
            start, n = mono, 0
        if n < MAX_EVENTS_PER_SECOND:
            self.entry.emit("mqtt.malformed", severity=Severity.WARNING,
                            message=f"malformed payload on {msg.topic!r}: {reason}",
                            topic=msg.topic, reason=reason, size=len(msg.payload),
                            malformed=self.counters["malformed"])
            # Not the payload: every viewer sees events, and a payload may hold restricted or
            # personal data; operators read it from the dead-letter table (get_dead_letter).
            n += 1
        self._event_window = (start, n)

    def describe(self) -> dict[str, Any]:
        return {"subscriptions": [s.filter for s, _ in self.subs], **self.counters,
                "last_malformed": self.last_malformed}
