"""Test integration: implements a hook that does not exist."""
from sitegate.hookspecs import hookimpl

@hookimpl
async def async_setup_entry(entry):
    pass
