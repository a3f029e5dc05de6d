"""Test integration: a hookimpl with an argument the hookspec does not have."""
from sitegate.hookspecs import hookimpl

@hookimpl
async def setup_entry(entry, hass):
    pass
