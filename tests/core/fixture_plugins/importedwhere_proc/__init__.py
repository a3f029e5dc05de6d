"""Test processor integration that records which thread imported it (the event loop's must not)."""
import threading

from sitegate.hookspecs import hookimpl
from sitegate.plugins import ProcessorType

IMPORTED_ON = threading.current_thread().name


class _Pass:
    def process(self, batch):
        return batch


@hookimpl
def processor_types():
    return {"importedwhere_proc": ProcessorType("importedwhere_proc", None, lambda params, ctx: _Pass())}
