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
        await trio.sleep(0.05)
        time.sleep(entry.config.block_for)   # the mistake the watchdog must name
        await trio.sleep_forever()
    entry.start_task(block, name="blocking-task")
