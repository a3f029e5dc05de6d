"""The site's event bus: entry state changes, alerts, devices online/offline, sink connectivity.

Emitting never blocks and never fails: each subscriber has a bounded buffer,
and a subscriber that falls behind loses events (counted) rather than slowing
the site. The WebSocket API and the loggers are subscribers.
"""

from __future__ import annotations

import collections
import fnmatch
import logging
from typing import Callable, Deque

import trio

from .model import Event

log = logging.getLogger(__name__)


class Subscription:
    def __init__(self, bus: "EventBus", pattern: str, maxlen: int):
        self.bus = bus
        self.pattern = pattern
        self.send, self.receive = trio.open_memory_channel[Event](maxlen)
        self.dropped = 0

    def matches(self, event: Event) -> bool:
        return self.pattern == "*" or fnmatch.fnmatchcase(event.kind, self.pattern)

    def close(self) -> None:
        self.bus._subs.discard(self)
        self.send.close()

    def __aiter__(self):
        return self.receive.__aiter__()


class EventBus:
    def __init__(self, recent: int = 500):
        self._subs: set[Subscription] = set()
        self._callbacks: list[Callable[[Event], None]] = []
        self.recent: Deque[Event] = collections.deque(maxlen=recent)
        self.emitted = 0

    def subscribe(self, pattern: str = "*", maxlen: int = 1024) -> Subscription:
        sub = Subscription(self, pattern, maxlen)
        self._subs.add(sub)
        return sub

    def add_callback(self, fn: Callable[[Event], None]) -> Callable[[], None]:
        """Call ``fn(event)`` synchronously on every event (keep it tiny). Returns a remover."""
        self._callbacks.append(fn)
        return lambda: self._callbacks.remove(fn) if fn in self._callbacks else None

    def emit(self, event: Event) -> None:
        self.emitted += 1
        self.recent.append(event)
        for fn in list(self._callbacks):
            try:
                fn(event)
            except Exception:  # noqa: BLE001 - an observer must not break emitters
                log.exception("event callback %r failed", fn)
        for sub in list(self._subs):
            if sub.matches(event):
                try:
                    sub.send.send_nowait(event)
                except trio.WouldBlock:
                    sub.dropped += 1
                except trio.BrokenResourceError:
                    self._subs.discard(sub)
