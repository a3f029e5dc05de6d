"""ACME's `fahrenheit` processor: degC readings of the named points become degF.

A third-party integration: published by the publisher `acme` with its own key, not by
sitegate (see examples/third_party/README.md for the way from this folder to a site).
"""

from __future__ import annotations

import attrs

from sitegate.hookspecs import hookimpl
from sitegate.model import Batch
from sitegate.plugins import ProcessorContext, ProcessorType


@attrs.frozen
class Params:
    """`through: [{fahrenheit: {points: [temperature]}}]`; an empty list converts every numeric point."""

    points: list[str] = attrs.Factory(list)


class Fahrenheit:
    def __init__(self, params: Params, ctx: ProcessorContext):
        self.only = frozenset(params.points)

    def process(self, batch: Batch) -> Batch | None:
        only = self.only
        values = [v * 1.8 + 32 if (not only or p in only) and isinstance(v, (int, float)) and not isinstance(v, bool)
                  else v for p, v in zip(batch.points, batch.values)]
        return Batch(batch.device, batch.points, values, batch.timestamps, batch.quality, batch.source)


@hookimpl
def processor_types():
    return {"fahrenheit": ProcessorType("fahrenheit", Params, Fahrenheit, "degC to degF for the named points")}
