"""Test integration that records which thread imported it (the event loop's must not)."""
import threading

import trio
from sitegate.hookspecs import hookimpl

IMPORTED_ON = threading.current_thread().name


@hookimpl
async def setup_entry(entry):
    entry.data["imported_on"] = IMPORTED_ON
    entry.start_task(trio.sleep_forever)
