"""The `deadband` processor: report on change (absolute and percent) with a maximum silence.

See processor.py for the behaviour and docs/processors.md#deadband for the parameters.
"""

from __future__ import annotations

from sitegate.hookspecs import hookimpl
from sitegate.plugins import ProcessorType

from .processor import DeadbandParams, create


@hookimpl
def processor_types():
    return {"deadband": ProcessorType("deadband", DeadbandParams, create,
                                      "pass a reading only when it changed by abs or percent; re-report after max_silence")}
