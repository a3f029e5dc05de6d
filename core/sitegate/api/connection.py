"""One authenticated WebSocket client: its bounded outgoing queue, writer task and subscriptions.

Senders never wait: `send` appends a ready-made text frame. A client that lets
its queue stay above the soft limit for longer than allowed, or reach the hard
cap, is disconnected, so it can never slow ingestion or other clients.
"""

from __future__ import annotations

import collections
import time
from typing import Any, Callable

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from .frames import frame_mode
from .tokens import TokenInfo


class Connection:
    ids = iter(range(1, 1 << 62))

    def __init__(self, ws: WebSocketConnection, remote: str, token: TokenInfo, *,
                 soft: int, soft_time: float, hard: int, deflate: bool = False):
        self.number = next(Connection.ids)
        self.ws = ws
        self.remote = remote
        self.token = token
        self.role = token.role
        self.soft, self.soft_time, self.hard = soft, soft_time, hard
        self.queue: collections.deque[str | bytes] = collections.deque()
        self.soft_since: float | None = None      # monotonic time the queue went above `soft`
        self.scope = trio.CancelScope()
        self.last_id = 0
        self.subscriptions: dict[int, Callable[[], None]] = {}   # id -> remover
        self.close_code = 1000
        self.close_reason = ""
        self.closed = False
        self.sent = 0
        self.peak = 0
        self._lot = trio.lowlevel.ParkingLot()
        self.on_hard_cap: Callable[["Connection"], None] | None = None
        self.frame_mode = frame_mode(ws, deflate)      # how pre-built frames reach it (frames.py)

    def send(self, text: str | bytes) -> None:
        """Queue one message (never blocks): text, or bytes of a whole WebSocket text frame (see
        frames.py). Over the hard cap the client is disconnected at once."""
        if self.closed:
            return
        q = self.queue
        q.append(text)
        n = len(q)
        if n > self.soft:
            if n > self.hard:
                if self.on_hard_cap is not None:
                    self.on_hard_cap(self)
                self.kill(1008, f"too slow: {n} messages queued (hard cap {self.hard})")
                return
            if self.soft_since is None:
                self.soft_since = time.monotonic()
            if n > self.peak:
                self.peak = n
        self._lot.unpark_all()

    def overdue(self, now: float) -> bool:
        return self.soft_since is not None and now - self.soft_since > self.soft_time

    def kill(self, code: int, reason: str) -> None:
        """Disconnect: stops the writer and the reader; the server closes the socket."""
        if self.closed:
            return
        self.closed = True
        self.close_code, self.close_reason = code, reason
        self.queue.clear()
        self.scope.cancel()

    async def writer(self) -> None:
        q, ws = self.queue, self.ws
        lock, stream = (ws._stream_lock, ws._stream) if self.frame_mode != "text" else (None, None)
        try:
            while True:
                while q:
                    item = q.popleft()
                    if type(item) is bytes:
                        # A whole text frame built once for every subscriber (fanout.py): written
                        # under trio-websocket's own stream lock, so frames never interleave.
                        async with lock:
                            await stream.send_all(item)
                    else:
                        await ws.send_message(item)
                    self.sent += 1
                    if self.soft_since is not None and len(q) <= self.soft:
                        self.soft_since = None
                await self._lot.park()
        except (ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError):
            self.kill(1000, "closed by the client")

    def close_subscriptions(self) -> None:
        for remove in self.subscriptions.values():
            remove()
        self.subscriptions.clear()

    def describe(self) -> dict[str, Any]:
        return {"number": self.number, "remote": self.remote, "token": self.token.name, "role": self.role,
                "queued": len(self.queue), "peak": self.peak, "sent": self.sent,
                "subscriptions": len(self.subscriptions)}
