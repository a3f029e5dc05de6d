"""The sink kind: batches become MQTT messages, and `deliver` returns once the broker PUBACKed them all.

A broker outage is normal operation: `deliver` raises SinkError (the data plane keeps
the readings and retries), it never blocks for the whole outage nor crashes the entry.
"""

from __future__ import annotations

import collections
import itertools
import time
from typing import Any, Iterator, Sequence

import trio

from sitegate.model import Batch
from sitegate.plugins import SinkError

from . import envelope
from .config import PublishConfig
from .connection import Connection, NotConnected
from .origins import OriginBook

SLICE = 256
_WILDCARDS = str.maketrans({"+": "_", "#": "_", "\x00": "_"})


class MqttSink:
    # The data plane may have this many deliver calls in flight (storage.deliveries_in_flight caps it):
    # concurrent calls publish one after the other, in the order they began, and only their waits
    # for PUBACKs overlap. Each call has its own Delivery (its own packet ids), so whichever PUBACK
    # arrives completes the right call, and a lost connection fails every call in flight.
    concurrent_deliveries = 4

    def __init__(self, conn: Connection, site: str, entry_id: str, cfg: PublishConfig,
                 origins: OriginBook | None = None):
        self.conn = conn
        self.site = site
        self.entry_id = entry_id
        self.cfg = cfg
        self.origins = origins
        self.template = cfg.topic_template
        self.batch_mode = cfg.mode == "batch"
        self._topics: dict[Any, str] = {}
        self._turns: collections.deque[trio.Event] = collections.deque()   # calls waiting to publish, in order
        self.counters = {"deliveries": 0, "messages": 0, "readings": 0, "failures": 0}
        self.last_error = ""
        self.last_delivered_at: float | None = None

    @property
    def connected(self) -> bool:
        return self.conn.online

    def _topic(self, device: str, point: str = "") -> str:
        key = (device, point)
        topic = self._topics.get(key)
        if topic is None:
            if len(self._topics) > 100_000:
                self._topics.clear()
            topic = self.template.format(site=self.site, entry=self.entry_id,
                                         device=device.translate(_WILDCARDS), point=point.translate(_WILDCARDS))
            self._topics[key] = topic
        return topic

    def messages(self, batches: Sequence[Batch]) -> Iterator[tuple[str, bytes]]:
        """The (topic, payload) messages for these batches, in order, encoded as they are taken."""
        origins = self.origins.sites if self.origins is not None else None
        site = self.site
        for batch in batches:
            if not len(batch):
                continue
            if origins:
                site = origins.get(batch.device, self.site)
            if self.batch_mode:
                yield self._topic(batch.device), envelope.encode_batch(site, batch)
            else:
                seq, device = batch.seq, batch.device
                for i, (point, value, ts, q) in enumerate(batch.rows()):
                    yield (self._topic(device, point),
                           envelope.encode_point(site, device, seq + i, point, value, ts, q))

    def encode(self, batches: Sequence[Batch]) -> list[tuple[str, bytes]]:
        return list(self.messages(batches))

    async def deliver(self, batches: Sequence[Batch]) -> None:
        if not batches:
            return
        # Taken before the first checkpoint: calls publish in the order they began.
        turn = trio.Event()
        turns = self._turns
        turns.append(turn)
        try:
            if turns[0] is not turn:
                await turn.wait()
            delivery = await self._publish(batches)
        finally:
            was_first = turns[0] is turn
            turns.remove(turn)
            if was_first and turns:
                turns[0].set()
        await self._acknowledged(batches, delivery)

    async def _publish(self, batches: Sequence[Batch]):
        messages = self.messages(batches)
        delivery = None
        try:
            # Slices of SLICE messages with a checkpoint between: a delivery of thousands of
            # readings in point mode must not hold the trio loop for its whole encoding.
            while True:
                before = delivery.sent if delivery is not None else 0
                delivery = self.conn.publish_many(itertools.islice(messages, SLICE), self.cfg.qos,
                                                  self.cfg.retain, delivery)
                if delivery.sent - before < SLICE or delivery.error is not None:
                    break
                await trio.lowlevel.checkpoint()
        except NotConnected as exc:
            self._failed(str(exc))
            raise SinkError(str(exc)) from None
        return delivery

    async def _acknowledged(self, batches: Sequence[Batch], delivery) -> None:
        if delivery.error is None and delivery.remaining:
            with trio.move_on_after(float(self.cfg.timeout)):
                await delivery.event.wait()
        else:
            await trio.lowlevel.checkpoint()
        if delivery.error is not None:
            self._failed(delivery.error)
            raise SinkError(delivery.error, permanent=delivery.permanent)
        if delivery.remaining:
            error = (f"{self.conn.where}: {delivery.remaining} messages not acknowledged "
                     f"within {float(self.cfg.timeout):g} s")
            self._failed(error)
            raise SinkError(error)
        self.counters["deliveries"] += 1
        self.counters["messages"] += delivery.sent
        self.counters["readings"] += sum(len(b) for b in batches)
        self.last_delivered_at = time.time()

    def _failed(self, error: str) -> None:
        self.counters["failures"] += 1
        self.last_error = error

    def describe(self) -> dict[str, Any]:
        return {"topic": self.template, "mode": self.cfg.mode, "qos": self.cfg.qos, **self.counters,
                "last_error": self.last_error, "last_delivered_at": self.last_delivered_at}
