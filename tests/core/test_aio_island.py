"""The asyncio island: results cross to trio, cancellation crosses back, callbacks arrive in batches."""

import asyncio
import threading

import pytest
import trio

from sitegate.aio import AsyncioIsland, Inbox


async def test_call_returns_the_coroutines_result_and_runs_off_the_trio_thread():
    async with AsyncioIsland() as island:
        async def where():
            await asyncio.sleep(0)
            return threading.current_thread().name
        assert await island.call(where) == "asyncio-island"


async def test_exceptions_cross_the_bridge():
    async with AsyncioIsland() as island:
        async def boom():
            raise ValueError("from asyncio")
        with pytest.raises(ValueError, match="from asyncio"):
            await island.call(boom)


async def test_cancelling_the_trio_caller_cancels_the_asyncio_task():
    cancelled = threading.Event()
    async with AsyncioIsland() as island:
        async def forever():
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                cancelled.set()
                raise
        with trio.move_on_after(0.1):
            await island.call(forever)
        assert cancelled.is_set()


async def test_inbox_delivers_items_from_another_thread_in_order_and_batched():
    inbox: Inbox[int] = Inbox()
    async with AsyncioIsland() as island:
        def produce():
            for i in range(10_000):
                inbox.put(i)
        island.call_soon(produce)
        got: list[int] = []
        batches = 0
        with trio.fail_after(5):
            while len(got) < 10_000:
                got.extend(await inbox.get_batch())
                batches += 1
    assert got == list(range(10_000))
    assert batches < 1000   # far fewer wake-ups than items


async def test_inbox_is_bounded_and_counts_drops():
    inbox: Inbox[int] = Inbox(limit=10)
    for i in range(25):
        inbox.put(i)
    assert await inbox.get_batch() == list(range(15, 25))
    assert inbox.dropped == 15
