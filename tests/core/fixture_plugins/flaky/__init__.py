"""Test integration: setup raises "not ready" a configured number of times, recording when it was tried."""
import attrs, trio
from sitegate.errors import EntryNotReady
from sitegate.hookspecs import hookimpl

ATTEMPTS: dict[str, list[float]] = {}

@attrs.frozen
class Config:
    fail_times: int = 1000

@hookimpl
def config_schema():
    return Config

@hookimpl
async def setup_entry(entry):
    tries = ATTEMPTS.setdefault(entry.id, [])
    tries.append(trio.current_time())
    if len(tries) <= entry.config.fail_times:
        raise EntryNotReady(f"peer not reachable (attempt {len(tries)})")
