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
        self.max_lag = 0.0
        self.last_block: tuple[str, str, float] | None = None

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self._started = time.perf_counter()

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        if self._started is None:   # added mid-step: no start time for this step
            return
        held = time.perf_counter() - self._started
        self._started = None
        if held < self.threshold:
            return
        entry = task.context.get(current_entry) or "core"
        self.blocked[entry] = self.blocked.get(entry, 0.0) + held
        self.max_lag = max(self.max_lag, held)
        self.last_block = (entry, task.name, held)
        log.warning("event loop blocked for %.3f s by entry %s (task %s): blocking I/O or CPU work "
                    "belongs in trio.to_thread.run_sync", held, entry, task.name)
        self.emit(Event("loop.blocked", entry, severity=Severity.WARNING,
                        message=f"entry {entry} blocked the event loop for {held:.3f} s in task {task.name}",
                        data={"entry": entry, "task": task.name, "seconds": round(held, 4)}))
