"""One authenticated WebSocket client: its bounded outgoing queue, writer task and subscriptions.

Senders never wait: `send` appends a ready-made text frame. A client that lets
its queue stay above the soft limit for longer than allowed, or reach the hard
cap, is disconnected, so it can never slow ingestion or other clients.
"""

from __future__ import annotations

import collections
import os
import time
from typing import Any, Callable

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from .frames import frame_mode
from .tokens import TokenInfo


class _Rest(bytes):
    """The rest of a frame the kernel took only part of; sent first, with the stream lock held."""


class _StreamLock:
    """A lock for the socket's byte stream that the task finishing a frame may release."""

    def __init__(self) -> None:
        self._sem = trio.Semaphore(1)

    def locked(self) -> bool:
        return self._sem.value == 0

    def acquire_nowait(self) -> None:
        self._sem.acquire_nowait()

    def release(self) -> None:
        self._sem.release()

    async def __aenter__(self) -> None:
        await self._sem.acquire()

    async def __aexit__(self, *exc: object) -> None:
        self._sem.release()


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
        self.partial_writes = 0
        self._lot = trio.lowlevel.ParkingLot()
        self.on_hard_cap: Callable[["Connection"], None] | None = None
        self.frame_mode = frame_mode(ws, deflate)      # how pre-built frames reach it (frames.py)
        self._fd: int | None = None
        self._lock: _StreamLock | None = None
        if self.frame_mode != "text":
            # trio-websocket's stream lock, swapped for one that any task may release: a frame
            # begun by the fan-out is finished by the writer (see _write_now).
            assert not ws._stream_lock.locked()
            self._lock = ws._stream_lock = _StreamLock()
            inner = getattr(ws._stream, "stream", ws._stream)     # http.Replay around the TCP stream
            if isinstance(inner, trio.SocketStream):               # not TLS: there the stream must write
                self._fd = inner.socket.fileno()

    def send(self, text: str | bytes) -> None:
        """Queue one message (never blocks): text, or bytes of a whole WebSocket text frame (see
        frames.py). Over the hard cap the client is disconnected at once."""
        if self.closed:
            return
        q = self.queue
        if self._fd is not None and not q and type(text) is bytes and self._write_now(text):
            return
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

    def _write_now(self, frame: bytes) -> bool:
        """Write a pre-built frame straight to the socket when nothing else is being sent; False
        to go through the queue and writer instead (the socket is full, or a send is under way).

        The fan-out's hot path: it saves waking the writer task and three trips through the
        scheduler per message, which is most of what a small frame costs.
        """
        lock = self._lock
        if lock.locked():
            return False                      # trio-websocket or the writer is mid-send
        try:
            n = os.write(self._fd, frame)
        except BlockingIOError:
            return False
        except OSError:
            self._fd = None                   # let the writer meet the error and close
            return False
        if n < len(frame):
            # The kernel took part of it: the stream stays locked until the writer has sent the
            # rest, so nothing (not even trio-websocket's own pong) can land inside the frame.
            lock.acquire_nowait()
            self.partial_writes += 1
            self.queue.appendleft(_Rest(frame[n:]))
            self._lot.unpark_all()
            return True
        self.sent += 1
        return True

    def overdue(self, now: float) -> bool:
        return self.soft_since is not None and now - self.soft_since > self.soft_time

    def kill(self, code: int, reason: str) -> None:
        """Disconnect: stops the writer and the reader; the server closes the socket."""
        if self.closed:
            return
        self.closed = True
        self.close_code, self.close_reason = code, reason
        if self.queue and type(self.queue[0]) is _Rest:
            self._lock.release()              # the half-sent frame will not be finished
        self.queue.clear()
        self.scope.cancel()

    async def writer(self) -> None:
        q, ws = self.queue, self.ws
        lock, stream = (self._lock, ws._stream) if self.frame_mode != "text" else (None, None)
        try:
            while True:
                while q:
                    item = q.popleft()
                    if type(item) is _Rest:
                        try:                  # the lock was taken when the frame was begun
                            await stream.send_all(item)
                        finally:
                            lock.release()
                    elif type(item) is bytes:
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
                "queued": len(self.queue), "peak": self.peak, "sent": self.sent, "partial_writes": self.partial_writes,
                "subscriptions": len(self.subscriptions)}
