"""The asyncio island: running asyncio libraries (asyncua, ...) from trio, without monkeypatching.

One asyncio event loop in a dedicated thread per island. `call` runs a
coroutine there and awaits its result in trio; cancelling the trio side
cancels the asyncio task (cancellation crosses the bridge). Work flowing the
other way (asyncio callbacks such as OPC-UA data-change notifications) goes
through `Inbox`, which hands items to trio in batches: one wake-up of the
trio loop per burst, not one per item.
"""

from __future__ import annotations

import asyncio
import collections
import threading
from typing import Any, Awaitable, Callable, Deque, Generic, TypeVar

import trio

T = TypeVar("T")


class AsyncioIsland:
    """An asyncio loop in its own thread. Use as ``async with AsyncioIsland() as island:``."""

    def __init__(self, name: str = "asyncio-island"):
        self.name = name
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    async def __aenter__(self) -> "AsyncioIsland":
        ready = threading.Event()

        def main() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self.loop = loop
            ready.set()
            try:
                loop.run_forever()
            finally:
                pending = asyncio.all_tasks(loop)
                for task in pending:
                    task.cancel()
                if pending:
                    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=main, name=self.name, daemon=True)
        self._thread.start()
        await trio.to_thread.run_sync(ready.wait)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        loop = self.loop
        if loop is not None and loop.is_running():
            loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(self._thread.join, 10)

    async def call(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """Run ``await fn(*args, **kwargs)`` on the island; return its result in trio.

        If the trio caller is cancelled, the asyncio task is cancelled too and
        this waits (shielded, bounded) for it to finish, so nothing keeps
        running on the island behind the caller's back.
        """
        assert self.loop is not None, "the island is not running"
        token = trio.lowlevel.current_trio_token()
        done = trio.Event()
        outcome: dict[str, Any] = {}

        # The wrapper signals completion itself: concurrent.futures.Future.cancel() would
        # fire done-callbacks at once, before the asyncio task has actually unwound.
        async def wrapper() -> None:
            try:
                outcome["value"] = await fn(*args, **kwargs)
            except BaseException as exc:  # noqa: BLE001 - handed to the trio side
                outcome["error"] = exc
            finally:
                try:
                    token.run_sync_soon(done.set)
                except trio.RunFinishedError:
                    pass

        future = asyncio.run_coroutine_threadsafe(wrapper(), self.loop)
        try:
            await done.wait()
        except trio.Cancelled:
            future.cancel()
            with trio.move_on_after(5) as cs:
                cs.shield = True
                await done.wait()
            raise
        if "error" in outcome:
            raise outcome["error"]
        return outcome["value"]

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """Schedule a plain callable on the island's loop (fire-and-forget, for tiny synchronous work)."""
        assert self.loop is not None
        self.loop.call_soon_threadsafe(fn, *args)


class Inbox(Generic[T]):
    """Items produced in another thread, consumed in trio in batches.

    ``put`` may be called from any thread and never blocks; the first put
    after the inbox was drained schedules one wake-up of the trio side.
    `limit` bounds memory: beyond it, the oldest items are dropped and counted.
    """

    def __init__(self, limit: int = 100_000):
        self._items: Deque[T] = collections.deque()
        self._lock = threading.Lock()
        self._token = trio.lowlevel.current_trio_token()
        self._wakeup = trio.Event()
        self._scheduled = False
        self.limit = limit
        self.dropped = 0
        self.received = 0

    def put(self, item: T) -> None:
        with self._lock:
            self._items.append(item)
            self.received += 1
            if len(self._items) > self.limit:
                self._items.popleft()
                self.dropped += 1
            if self._scheduled:
                return
            self._scheduled = True
        try:
            self._token.run_sync_soon(self._wake)
        except trio.RunFinishedError:
            pass

    def _wake(self) -> None:
        self._wakeup.set()

    async def get_batch(self) -> list[T]:
        """Wait until there are items; return all of them."""
        while True:
            with self._lock:
                if self._items:
                    items = list(self._items)
                    self._items.clear()
                    self._scheduled = False
                    return items
                self._scheduled = False
            await self._wakeup.wait()
            self._wakeup = trio.Event()
