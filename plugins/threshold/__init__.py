"""The `threshold` processor: warning/critical alerts above or below, with hysteresis and cooldown.

See processor.py for the behaviour and docs/processors.md#threshold for the parameters.
"""

from __future__ import annotations

from sitegate.hookspecs import hookimpl
from sitegate.plugins import ProcessorType

from .processor import ThresholdParams, create


@hookimpl
def processor_types():
    return {"threshold": ProcessorType("threshold", ThresholdParams, create,
                                       "alert events on warning/critical levels; readings pass through")}
