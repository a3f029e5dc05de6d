"""The `calibration` processor: offset and scale per point glob, and unit conversion (degF->degC, kPa->bar, ...).

See processor.py and units.py for the behaviour, docs/processors.md#calibration for the parameters.
"""

from __future__ import annotations

from sitegate.hookspecs import hookimpl
from sitegate.plugins import ProcessorType

from .processor import CalibrationParams, create


@hookimpl
def processor_types():
    return {"calibration": ProcessorType("calibration", CalibrationParams, create,
                                         "value = convert(raw * scale + offset), first matching rule per point")}
