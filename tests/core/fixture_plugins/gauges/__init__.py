"""Test integration exporting its own metrics (one good, two it must not be allowed to export)."""
import trio
from sitegate.hookspecs import hookimpl

@hookimpl
async def setup_entry(entry):
    entry.start_task(trio.sleep_forever)

@hookimpl
def entry_metrics(entry):
    return {"polls_total": 42, "queue_depth": 3.5, "Bad-Name": 1, "text": "nope"}
