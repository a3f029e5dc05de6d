"""The sitegate WASM ABI 1: where a batch sits in a module's linear memory, and how results come back.

Pure byte layout, no wasmtime here (runtime.py calls the module). docs/wasm-processors.md
is the reference for module authors; the constants below are the contract.

A frame for n readings, at the address `alloc` returned (8-aligned), every column n long:

    +0          i32  events_n     written by the module (the host zeroes it first)
    +4          i32  reserved
    +8          f64  in_values[n]
    +8+8n       f64  in_ts[n]          seconds since the epoch
    +8+16n      i32  in_points[n]      point ids, dense from 0, < max_points
    +8+20n      i32  in_quality[n]     0 good, 0x40.. uncertain, 0x80.. bad
    +8+24n      f64  out_values[n]
    +8+32n      f64  out_ts[n]
    +8+40n      i32  out_points[n]
    +8+44n      i32  out_quality[n]
    +8+48n      event[n], 32 bytes each: i32 point, i32 severity (0 info, 1 warning, 2 critical),
                i32 code, i32 reserved, f64 value, f64 ts

`process(frame, n)` returns out_n (0..n), or a negative number for "cannot process".
"""

from __future__ import annotations

import math
import struct
from array import array
from typing import Any, Sequence

ABI_VERSION = 1
HEADER = 8
BYTES_PER_READING = 80      # 24 in + 24 out + 32 event
EVENT_SIZE = 32
EVENT = struct.Struct("<iiiidd")
MAX_SEVERITY = 2


def frame_bytes(n: int) -> int:
    return HEADER + BYTES_PER_READING * n


def offsets(n: int) -> dict[str, int]:
    """Offsets of each column from the frame start (for tests and documentation)."""
    return {"events_n": 0, "in_values": 8, "in_ts": 8 + 8 * n, "in_points": 8 + 16 * n,
            "in_quality": 8 + 20 * n, "out_values": 8 + 24 * n, "out_ts": 8 + 32 * n,
            "out_points": 8 + 40 * n, "out_quality": 8 + 44 * n, "events": 8 + 48 * n}


_F64: dict[int, struct.Struct] = {}


def f64_bytes(values: Sequence[Any]) -> bytes:
    """Values as little-endian f64 bytes (struct.pack beats array('d', list) about 2x on 1,000 floats)."""
    n = len(values)
    packer = _F64.get(n)
    if packer is None:
        if len(_F64) > 256:
            _F64.clear()        # many distinct batch sizes: keep the cache small
        packer = _F64[n] = struct.Struct(f"<{n}d")
    try:
        return packer.pack(*values)
    except struct.error:
        return float_column(values).tobytes()


def float_column(values: Sequence[Any]) -> array:
    """Values as f64. Anything that is not a number (None, text) goes in as NaN: modules see numbers only."""
    try:
        return array("d", values)
    except TypeError:
        out = array("d")
        for v in values:
            try:
                out.append(float(v))
            except (TypeError, ValueError):
                out.append(math.nan)
        return out


def quality_column(quality: Sequence[int] | None, n: int) -> bytes:
    if quality is None:
        return bytes(4 * n)
    return array("i", quality).tobytes()


def decode_events(raw: bytes, count: int) -> list[tuple[int, int, int, float, float]]:
    """(point id, severity, code, value, ts) per event record."""
    return [(p, sev, code, value, ts) for p, sev, code, _, value, ts in EVENT.iter_unpack(raw[:count * EVENT_SIZE])]
