"""Calibration: offset and scale per point glob, then optional unit conversion.

The first rule whose `devices` and `points` globs match a reading applies:
value = convert(raw * scale + offset). Rules resolve once per (device, point) into
one affine map, so the per-reading cost is a multiply and an add.
"""

from __future__ import annotations

import fnmatch
from typing import Any

import attrs

from sitegate.model import Batch
from sitegate.plugins import ProcessorContext

from .units import conversion


def _check_convert(_, attribute, value):
    if value is not None:
        conversion(value)


@attrs.frozen
class Rule:
    points: str = "*"                 # glob on the point name
    devices: str = "*"                # glob on the device name
    scale: float = 1.0
    offset: float = 0.0               # added after scaling, in the raw unit
    convert: str | None = attrs.field(default=None, validator=_check_convert)   # e.g. "degF->degC"

    def affine(self) -> tuple[float, float]:
        ca, cb = conversion(self.convert) if self.convert else (1.0, 0.0)
        return ca * self.scale, ca * self.offset + cb


def _rules(_, attribute, value):
    if not value:
        raise ValueError("rules: expected at least one rule")


@attrs.frozen
class CalibrationParams:
    rules: list[Rule] = attrs.field(validator=_rules)


class Calibration:
    """One route step: a cache of device -> point -> (a, b) or None (no rule matches)."""

    def __init__(self, params: CalibrationParams, ctx: ProcessorContext | None = None):
        self.rules = [(r.devices, r.points, r.affine()) for r in params.rules]
        self.cache: dict[str, dict[str, tuple[float, float] | None]] = {}

    def _resolve(self, device: str, point: str) -> tuple[float, float] | None:
        for devices, points, ab in self.rules:
            if fnmatch.fnmatchcase(device, devices) and fnmatch.fnmatchcase(point, points):
                return ab
        return None

    def process(self, batch: Batch) -> Batch | None:
        device = batch.device
        maps = self.cache.get(device)
        if maps is None:
            maps = self.cache[device] = {}
        points, values = batch.points, batch.values
        out: list[Any] | None = None
        for i in range(len(points)):
            p = points[i]
            ab = maps.get(p, False)
            if ab is False:
                ab = maps[p] = self._resolve(device, p)
            if ab is None:
                continue
            v = values[i]
            if v.__class__ is bool:       # a switch is not a measurement to rescale
                continue
            try:
                y = v * ab[0] + ab[1]
            except TypeError:
                continue
            if out is None:
                out = list(values)
            out[i] = y
        if out is None:
            return batch
        return attrs.evolve(batch, values=out)


def create(params: CalibrationParams, ctx: ProcessorContext) -> Calibration:
    return Calibration(params, ctx)
