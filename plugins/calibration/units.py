"""Unit conversions as affine maps (y = a * x + b), for the calibration processor.

Each unit is (dimension, factor, offset) towards its dimension's base unit: base = x * factor + offset.
Only linear units of the same dimension convert into each other; anything else is a config error.
"""

from __future__ import annotations

_F = 5.0 / 9.0

UNITS: dict[str, tuple[str, float, float]] = {
    # temperature, base K
    "K": ("temperature", 1.0, 0.0), "degC": ("temperature", 1.0, 273.15),
    "degF": ("temperature", _F, 273.15 - 32.0 * _F),
    # pressure, base Pa
    "Pa": ("pressure", 1.0, 0.0), "hPa": ("pressure", 100.0, 0.0), "kPa": ("pressure", 1e3, 0.0),
    "MPa": ("pressure", 1e6, 0.0), "mbar": ("pressure", 100.0, 0.0), "bar": ("pressure", 1e5, 0.0),
    "psi": ("pressure", 6894.757293168361, 0.0), "atm": ("pressure", 101325.0, 0.0),
    # energy, base J
    "J": ("energy", 1.0, 0.0), "kJ": ("energy", 1e3, 0.0), "MJ": ("energy", 1e6, 0.0),
    "Wh": ("energy", 3600.0, 0.0), "kWh": ("energy", 3.6e6, 0.0), "MWh": ("energy", 3.6e9, 0.0),
    # power, base W
    "W": ("power", 1.0, 0.0), "kW": ("power", 1e3, 0.0), "MW": ("power", 1e6, 0.0),
    # electrical
    "mA": ("current", 1e-3, 0.0), "A": ("current", 1.0, 0.0),
    "mV": ("voltage", 1e-3, 0.0), "V": ("voltage", 1.0, 0.0), "kV": ("voltage", 1e3, 0.0),
    # length, base m
    "mm": ("length", 1e-3, 0.0), "cm": ("length", 1e-2, 0.0), "m": ("length", 1.0, 0.0),
    "km": ("length", 1e3, 0.0), "in": ("length", 0.0254, 0.0), "ft": ("length", 0.3048, 0.0),
    # volume, base m3
    "l": ("volume", 1e-3, 0.0), "m3": ("volume", 1.0, 0.0), "gal": ("volume", 0.003785411784, 0.0),
    # volume flow, base m3/s
    "l/s": ("flow", 1e-3, 0.0), "l/min": ("flow", 1e-3 / 60.0, 0.0), "m3/h": ("flow", 1.0 / 3600.0, 0.0),
    "m3/s": ("flow", 1.0, 0.0),
    # speed, base m/s
    "m/s": ("speed", 1.0, 0.0), "km/h": ("speed", 1.0 / 3.6, 0.0),
    # mass, base kg
    "g": ("mass", 1e-3, 0.0), "kg": ("mass", 1.0, 0.0), "t": ("mass", 1e3, 0.0),
    # time, base s
    "ms": ("time", 1e-3, 0.0), "s": ("time", 1.0, 0.0), "min": ("time", 60.0, 0.0), "h": ("time", 3600.0, 0.0),
    # ratio
    "%": ("ratio", 0.01, 0.0), "ratio": ("ratio", 1.0, 0.0),
}


def conversion(spec: str) -> tuple[float, float]:
    """(a, b) for a conversion written `from->to` (e.g. `degF->degC`), or ValueError saying why not."""
    parts = [s.strip() for s in spec.split("->")]
    if len(parts) != 2 or not all(parts):
        raise ValueError(f"convert: expected 'from->to' such as 'degF->degC', got {spec!r}")
    src, dst = parts
    for unit in (src, dst):
        if unit not in UNITS:
            raise ValueError(f"convert: unknown unit {unit!r} in {spec!r}; known units: {', '.join(UNITS)}")
    (dim_a, fa, oa), (dim_b, fb, ob) = UNITS[src], UNITS[dst]
    if dim_a != dim_b:
        same = [u for u, (d, _, _) in UNITS.items() if d == dim_a]
        raise ValueError(f"convert: {src} is a {dim_a} and {dst} a {dim_b} unit; {src} converts to {', '.join(same)}")
    return fa / fb, (oa - ob) / fb
