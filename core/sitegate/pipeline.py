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
        # The last batch per (device, point set): the latest value of every point is derived
        # from these on demand, so the hot path stores one reference per batch, not per reading.
        self._last_batches: dict[tuple[str, tuple[str, ...]], Batch] = {}

    # --- sequence numbers: persisted by the WAL when there is one ---------------
    def seed_sequences(self, next_seq: dict[str, int]) -> None:
        """Continue numbering after a restart (the WAL knows the last seq per device)."""
        for device, seq in next_seq.items():
            if seq > self._next_seq.get(device, 0):
                self._next_seq[device] = seq

    def allocate(self, device: str, n: int) -> int:
        """Reserve `n` sequence numbers of `device` for readings a processor produced; the first."""
        seq = self._next_seq.get(device, 0)
        self._next_seq[device] = seq + n
        return seq

    def _stamp(self, batch: Batch) -> Batch:
        # Acceptance hands the batch over: it is stamped in place exactly once (a copy is
        # made only if an adapter publishes the same object twice). evolve() costs a whole
        # second construction per batch on the hot path.
        seq = self._next_seq.get(batch.device, 0)
        self._next_seq[batch.device] = seq + len(batch)
        if batch.seq != -1:
            return attrs.evolve(batch, seq=seq)
        object.__setattr__(batch, "seq", seq)
        return batch

    def add_tap(self, fn: Callable[[Batch], None]) -> Callable[[], None]:
        """Observe every accepted batch synchronously (keep it cheap). Returns a remover."""
        self._taps.append(fn)
        return lambda: self._taps.remove(fn) if fn in self._taps else None

    def _observe(self, batch: Batch) -> None:
        self.batches_in += 1
        self.readings_in += len(batch.points)
        points = batch.points
        self._last_batches[(batch.device, points if type(points) is tuple else tuple(points))] = batch
        for tap in self._taps:
            tap(batch)

    @property
    def latest(self) -> dict[tuple[str, str], tuple[object, float, int]]:
        """(device, point) -> (value, timestamp, quality) of the newest accepted reading."""
        out: dict[tuple[str, str], tuple[object, float, int]] = {}
        for batch in sorted(self._last_batches.values(), key=lambda b: max(b.timestamps, default=0)):
            q = batch.quality or (0,) * len(batch.points)
            for p, v, t, qq in zip(batch.points, batch.values, batch.timestamps, q):
                out[(batch.device, p)] = (v, t, qq)
        return out

    def latest_of(self, device: str) -> dict[str, tuple[object, float, int]]:
        return {p: vtq for (d, p), vtq in self.latest.items() if d == device}

    async def submit(self, batch: Batch) -> Batch:
        """Accept a batch; returns it stamped once the stage has it safe. Waits under backpressure."""
        if not len(batch):
            return batch
        stage = self.stage
        if stage is None:
            stamped = self._stamp(batch)
            self._observe(stamped)
            await trio.lowlevel.checkpoint_if_cancelled()
            return stamped
        async with self._limiter:
            stamped = self._stamp(batch)
            self._observe(stamped)
            await stage.accept(stamped)
            return stamped

    async def submit_many(self, batches: list[Batch]) -> list[Batch]:
        """Accept several batches (e.g. one poll of many devices) with one hand-over."""
        stage = self.stage
        batches = [b for b in batches if len(b)]
        if stage is None:
            stamped = [self._stamp(b) for b in batches]
            for b in stamped:
                self._observe(b)
            await trio.lowlevel.checkpoint_if_cancelled()
            return stamped
        accept_many = getattr(stage, "accept_many", None)
        async with self._limiter:
            stamped = [self._stamp(b) for b in batches]
            for b in stamped:
                self._observe(b)
            if accept_many is not None:
                await accept_many(stamped)
            else:
                for b in stamped:
                    await stage.accept(b)
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
        stamped = self._stamp(batch)
        self._observe(stamped)
        accept_nowait = getattr(self.stage, "accept_nowait", None)
        if accept_nowait is None:
            raise NotImplementedError(f"stage {type(self.stage).__name__} cannot accept without waiting")
        accept_nowait(stamped)
        return True
