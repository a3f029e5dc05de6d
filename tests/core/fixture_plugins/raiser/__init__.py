"""Test integration: setup raises an unexpected error, or EntryError."""
import attrs
from sitegate.errors import EntryError
from sitegate.hookspecs import hookimpl

@attrs.frozen
class Config:
    fatal: bool = False

@hookimpl
def config_schema():
    return Config

@hookimpl
async def setup_entry(entry):
    if entry.config.fatal:
        raise EntryError("credentials rejected")
    raise ZeroDivisionError("bug in plugin")
