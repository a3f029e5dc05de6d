"""Test integration: a task that blocks the event loop with a synchronous sleep."""
import time
import attrs, trio
from sitegate.hookspecs import hookimpl

@attrs.frozen
class Config:
    block_for: float = 0.3

@hookimpl
def config_schema():
    return Config

@hookimpl
async def setup_entry(entry):
    async def block():
        while True:   # again and again, so a test that starts listening late still sees one
            await trio.sleep(0.05)
            time.sleep(entry.config.block_for)   # the mistake the watchdog must name
            await trio.sleep(0.5)
    entry.start_task(block, name="blocking-task")
