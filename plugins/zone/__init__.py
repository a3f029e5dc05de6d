"""The `zone` processor: rules correlating several devices (avg temperature above X while max vibration above Y).

See processor.py for the behaviour and docs/processors.md#zone for the parameters.
"""

from __future__ import annotations

from sitegate.hookspecs import hookimpl
from sitegate.plugins import ProcessorType

from .processor import ZoneParams, create


@hookimpl
def processor_types():
    return {"zone": ProcessorType("zone", ZoneParams, create,
                                  "alert when aggregates across a zone's devices all meet their conditions")}
