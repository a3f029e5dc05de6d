"""Deterministic signal shapes for simulated points: the same (seed, t) always gives the same value.

Pure functions of time, so tests can compute the expected value of any
reading from its timestamp alone.
"""

from __future__ import annotations

import math
import zlib
from typing import Callable

import attrs

SHAPES = ("sine", "step", "ramp", "noise", "counter")


def _check_shape(_, attribute, value):
    if value not in SHAPES:
        raise ValueError(f"expected one of {', '.join(SHAPES)}, got {value!r}")


@attrs.frozen
class Signal:
    """One point's waveform. `period` in seconds; `wrap` for counters (e.g. 65536 for a 16-bit register)."""

    name: str
    shape: str = attrs.field(default="sine", validator=_check_shape)
    amplitude: float = 10.0
    offset: float = 20.0
    period: float = 60.0
    rate: float = 1.0          # counter increase per second
    wrap: int = 65536
    unit: str = ""


def _noise(seed: int, t: float) -> float:
    # Hash-based noise: deterministic, no RNG state to carry between calls.
    h = zlib.crc32(f"{seed}:{round(t, 3)}".encode())
    return (h / 0xFFFFFFFF) * 2.0 - 1.0


def evaluator(signal: Signal, seed: int) -> Callable[[float], float | int]:
    a, o, p = signal.amplitude, signal.offset, signal.period or 1.0
    phase = (zlib.crc32(f"{signal.name}:{seed}".encode()) % 1000) / 1000.0 * p
    if signal.shape == "sine":
        w = 2 * math.pi / p
        return lambda t: o + a * math.sin(w * (t + phase))
    if signal.shape == "step":
        return lambda t: o + (a if int((t + phase) // (p / 2)) % 2 else 0.0)
    if signal.shape == "ramp":
        return lambda t: o + a * (((t + phase) % p) / p)
    if signal.shape == "noise":
        return lambda t: o + a * _noise(seed, t)
    rate, wrap = signal.rate, signal.wrap
    return lambda t: int(t * rate) % wrap
