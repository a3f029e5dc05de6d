"""The `counter` processor: cumulative counters (energy meters) to deltas, handling wrap-around and resets.

See processor.py for the behaviour and docs/processors.md#counter for the parameters.
"""

from __future__ import annotations

from sitegate.hookspecs import hookimpl
from sitegate.plugins import ProcessorType

from .processor import CounterParams, create


@hookimpl
def processor_types():
    return {"counter": ProcessorType("counter", CounterParams, create,
                                     "counter to delta; wrap at modulus, a decrease beyond max_delta is a reset")}
