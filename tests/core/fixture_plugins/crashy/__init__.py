"""Test integration: loads fine, then its task raises while running."""
import attrs, trio
from sitegate.hookspecs import hookimpl
from sitegate.model import Batch

@attrs.frozen
class Config:
    crash_after: int = 3

@hookimpl
def config_schema():
    return Config

@hookimpl
async def setup_entry(entry):
    async def work():
        for i in range(entry.config.crash_after):
            await entry.publish(Batch.of(entry.id, {"x": i}))
            await trio.sleep(0.01)
        raise RuntimeError("device sent garbage")
    entry.start_task(work)
