"""Test integration: setup_entry that is not async."""
from sitegate.hookspecs import hookimpl

@hookimpl
def setup_entry(entry):
    pass
