"""Test integration holding credentials, to prove diagnostics never show them."""
import attrs, trio
from sitegate.hookspecs import hookimpl

@attrs.frozen
class Config:
    url: str
    password: str
    api_token: str = ""

@hookimpl
def config_schema():
    return Config

@hookimpl
async def setup_entry(entry):
    entry.start_task(trio.sleep_forever)

@hookimpl
def entry_diagnostics(entry):
    # A careless plugin that hands back its whole config, credentials included.
    return {"connected_to": entry.config.url, "config": attrs.asdict(entry.config)}
