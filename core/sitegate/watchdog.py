"""Noticing a blocked event loop and naming the entry that blocked it.

A trio Instrument times every task step; a step longer than the threshold
means that task held the loop, and the task's context says which entry it
belongs to (entries.current_entry is inherited by every task an entry starts).
"""

from __future__ import annotations

import logging
import time
from typing import Callable

import trio

from .entries import current_entry
from .model import Event, Severity

log = logging.getLogger(__name__)


class LoopWatchdog(trio.abc.Instrument):
    def __init__(self, threshold: float, emit: Callable[[Event], None]):
        self.threshold = threshold
        self.emit = emit
        self._started: float | None = None
        self.blocked: dict[str, float] = {}      # entry id (or "core") -> seconds of loop held in long steps
        self.held: dict[str, float] = {}         # entry id (or "core") -> seconds of loop held, every step
        # Event-loop lag (how late a sleeper wakes), as a Prometheus histogram: bucket bounds and counts.
        self.lag_bounds = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
        self.lag_counts = [0] * (len(self.lag_bounds) + 1)
        self.lag_sum = 0.0
        self.max_lag = 0.0
        self.last_block: tuple[str, str, float] | None = None

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self._started = time.perf_counter()

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        if self._started is None:   # added mid-step: no start time for this step
            return
        held = time.perf_counter() - self._started
        self._started = None
        entry = task.context.get(current_entry) or "core"
        self.held[entry] = self.held.get(entry, 0.0) + held
        if held < self.threshold:
            return
        self.blocked[entry] = self.blocked.get(entry, 0.0) + held
        self.max_lag = max(self.max_lag, held)
        self.last_block = (entry, task.name, held)
        log.warning("event loop blocked for %.3f s by entry %s (task %s): blocking I/O or CPU work "
                    "belongs in trio.to_thread.run_sync", held, entry, task.name)
        self.emit(Event("loop.blocked", entry, severity=Severity.WARNING,
                        message=f"entry {entry} blocked the event loop for {held:.3f} s in task {task.name}",
                        data={"entry": entry, "task": task.name, "seconds": round(held, 4)}))


    def record_lag(self, lag: float) -> None:
        for i, bound in enumerate(self.lag_bounds):
            if lag <= bound:
                self.lag_counts[i] += 1
                break
        else:
            self.lag_counts[-1] += 1
        self.lag_sum += lag

    async def measure_lag(self, every: float = 0.1) -> None:
        """Sleep `every` seconds, again and again, and record how late each wake-up is."""
        import trio
        while True:
            t0 = trio.current_time()
            await trio.sleep(every)
            self.record_lag(max(0.0, trio.current_time() - t0 - every))
