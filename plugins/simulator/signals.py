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


def _stream(seed: int, device: str) -> int:
    # The running CRC of "<seed>:" (or "<seed>:<device>:"): each reading then hashes only its time.
    return zlib.crc32(f"{seed}:{device}:".encode() if device else f"{seed}:".encode())


def _noise(start: int, t: float) -> float:
    # Hash-based noise: deterministic, no RNG state to carry between calls.
    h = zlib.crc32(f"{round(t, 3)}".encode(), start)
    return (h / 0xFFFFFFFF) * 2.0 - 1.0


def evaluator(signal: Signal, seed: int, device: str = "") -> Callable[[float], float | int]:
    """The point's value as a function of time.

    With a `device` name, the device gets its own phase, its own band (up to 10 % narrower, inside
    the configured one), its own noise stream and its own counter start, all derived from (name,
    seed, device): two devices of one entry differ, the same device is the same in every run.
    Without one, the bare signal: the whole band, counter from 0.
    """
    a, o, p = signal.amplitude, signal.offset, signal.period or 1.0
    key = zlib.crc32(f"{signal.name}:{seed}:{device}".encode() if device else f"{signal.name}:{seed}".encode())
    phase = (key % 1000) / 1000.0 * p
    if device:
        # A band up to 10 % narrower, at one end of the configured one: values stay in it.
        u = ((key >> 10) % 1001) / 500.0 - 1.0
        spare = 0.1 * abs(u) * a
        a -= spare
        if u > 0:
            o += spare
        elif signal.shape in ("sine", "noise"):      # o ± a (step and ramp: o to o + a)
            o -= spare
    if signal.shape == "sine":
        w = 2 * math.pi / p
        return lambda t: o + a * math.sin(w * (t + phase))
    if signal.shape == "step":
        return lambda t: o + (a if int((t + phase) // (p / 2)) % 2 else 0.0)
    if signal.shape == "ramp":
        return lambda t: o + a * (((t + phase) % p) / p)
    if signal.shape == "noise":
        start = _stream(seed, device)
        return lambda t: o + a * _noise(start, t)
    rate, wrap = signal.rate, signal.wrap
    first = (key >> 10) % wrap if device else 0
    return lambda t: (int(t * rate) + first) % wrap
