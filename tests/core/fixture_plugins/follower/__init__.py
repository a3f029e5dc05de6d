"""Test integration whose config names another entry (a simulator), like mqttsn_update's devices_of."""
import attrs
import trio
from sitegate.hookspecs import hookimpl


@attrs.define
class FollowerConfig:
    leader: str = attrs.field(metadata={"names_entry": ("simulator",)})


@hookimpl
def config_schema():
    return FollowerConfig


@hookimpl
async def setup_entry(entry):
    entry.start_task(trio.sleep_forever)
