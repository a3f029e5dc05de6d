"""The `window` processor: tumbling, wall-clock aligned aggregates (min, max, avg, sum, count, first, last).

See processor.py for the behaviour and docs/processors.md#window for the parameters.
"""

from __future__ import annotations

from sitegate.hookspecs import hookimpl
from sitegate.plugins import ProcessorType

from .processor import WindowParams, create


@hookimpl
def processor_types():
    return {"window": ProcessorType("window", WindowParams, create,
                                    "tumbling windows aligned to the clock; emits <point>.<stat> at each window's end")}
