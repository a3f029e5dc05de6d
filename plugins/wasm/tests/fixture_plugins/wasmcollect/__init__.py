"""A sink for the wasm tests: keeps every delivered reading in memory, as (device, point, value, ts)."""

from __future__ import annotations

import attrs
import trio

from sitegate.hookspecs import hookimpl


@attrs.frozen
class CollectConfig:
    pass


class Collect:
    def __init__(self):
        self.readings: list[tuple] = []

    async def deliver(self, batches) -> None:
        for b in batches:
            self.readings.extend((b.device, p, v, t) for p, v, t, _ in b.rows())
        await trio.lowlevel.checkpoint()


@hookimpl
def config_schema():
    return CollectConfig


@hookimpl
async def setup_entry(entry) -> None:
    entry.data["sink"] = Collect()


@hookimpl
def sink_factory(entry):
    return entry.data["sink"]
