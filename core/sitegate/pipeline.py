"""Where adapters hand in batches: sequence numbers, live taps, and the stages after.

The core's pipeline interface. `submit` stamps each batch with per-device
sequence numbers, feeds taps (latest values, live subscriptions), and passes
it to the configured stage (routes → processors → WAL → sinks, when the data
plane is configured). Without a stage, readings are counted and dropped: the
"empty pipeline" of the core benchmark.
"""

from __future__ import annotations

from typing import Awaitable, Callable, Protocol

import attrs
import trio

from .model import Batch


class Stage(Protocol):
    """What comes after ingestion. `accept` returns once the batch is safe (committed)."""

    async def accept(self, batch: Batch) -> None: ...
    def saturated(self) -> bool: ...


class Pipeline:
    def __init__(self, site: str, *, max_pending: int = 64):
        self.site = site
        self._next_seq: dict[str, int] = {}
        self._taps: list[Callable[[Batch], None]] = []
        self.stage: Stage | None = None
        self.readings_in = 0
        self.batches_in = 0
        self.rejected = 0          # try_submit refusals (backpressure)
        self._limiter = trio.CapacityLimiter(max_pending)
        self.latest: dict[tuple[str, str], tuple[object, float, int]] = {}

    # --- sequence numbers: persisted by the WAL when there is one ---------------
    def seed_sequences(self, next_seq: dict[str, int]) -> None:
        """Continue numbering after a restart (the WAL knows the last seq per device)."""
        for device, seq in next_seq.items():
            if seq > self._next_seq.get(device, 0):
                self._next_seq[device] = seq

    def _stamp(self, batch: Batch) -> Batch:
        seq = self._next_seq.get(batch.device, 0)
        self._next_seq[batch.device] = seq + len(batch)
        return attrs.evolve(batch, seq=seq)

    def add_tap(self, fn: Callable[[Batch], None]) -> Callable[[], None]:
        """Observe every accepted batch synchronously (keep it cheap). Returns a remover."""
        self._taps.append(fn)
        return lambda: self._taps.remove(fn) if fn in self._taps else None

    def _observe(self, batch: Batch) -> None:
        self.batches_in += 1
        self.readings_in += len(batch)
        latest = self.latest
        device = batch.device
        q = batch.quality
        if q is None:
            for p, v, t in zip(batch.points, batch.values, batch.timestamps):
                latest[(device, p)] = (v, t, 0)
        else:
            for p, v, t, qq in zip(batch.points, batch.values, batch.timestamps, q):
                latest[(device, p)] = (v, t, qq)
        for tap in self._taps:
            tap(batch)

    async def submit(self, batch: Batch) -> Batch:
        """Accept a batch; returns it stamped once the stage has it safe. Waits under backpressure."""
        if not len(batch):
            return batch
        stage = self.stage
        if stage is None:
            stamped = self._stamp(batch)
            self._observe(stamped)
            await trio.lowlevel.checkpoint()
            return stamped
        async with self._limiter:
            stamped = self._stamp(batch)
            self._observe(stamped)
            await stage.accept(stamped)
            return stamped

    def saturated(self) -> bool:
        return (self._limiter.available_tokens == 0) or (self.stage is not None and self.stage.saturated())

    def try_submit(self, batch: Batch) -> bool:
        """Accept without waiting, or refuse (False) when saturated. The batch is committed in the background."""
        if self.saturated():
            self.rejected += 1
            return False
        if self.stage is None:
            self._observe(self._stamp(batch))
            return True
        raise NotImplementedError("try_submit with a stage is provided by the data plane")
