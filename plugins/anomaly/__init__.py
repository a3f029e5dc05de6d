"""The `anomaly` processor: EWMA z-score per point, flagging readings (quality UNCERTAIN and/or events).

See processor.py for the behaviour and docs/processors.md#anomaly for the parameters.
"""

from __future__ import annotations

from sitegate.hookspecs import hookimpl
from sitegate.plugins import ProcessorType

from .processor import AnomalyParams, create


@hookimpl
def processor_types():
    return {"anomaly": ProcessorType("anomaly", AnomalyParams, create,
                                     "flag readings whose EWMA z-score exceeds threshold")}
