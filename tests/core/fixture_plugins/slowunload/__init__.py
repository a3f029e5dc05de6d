"""Test integration: unload hangs, cleanups are recorded in order."""
import trio
from sitegate.hookspecs import hookimpl

ORDER: list[str] = []

@hookimpl
async def setup_entry(entry):
    entry.on_unload(lambda: ORDER.append("first-registered"))
    async def second():
        ORDER.append("second-registered")
    entry.on_unload(second)
    entry.start_task(trio.sleep_forever)

@hookimpl
async def unload_entry(entry):
    await trio.sleep(3600)
