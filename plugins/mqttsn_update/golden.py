"""Golden config: the desired config of a device against the one it reports.

`config_delta` is what has to be pushed (None removes a key); an empty delta
means no drift. The node applies the delta and checks the result against the
signed hash, so a delta never needs its own signature.
"""

from __future__ import annotations

from typing import Any, Mapping


def config_delta(reported: Mapping[str, Any], desired: Mapping[str, Any]) -> dict[str, Any]:
    delta = {key: value for key, value in desired.items() if reported.get(key) != value or key not in reported}
    delta.update({key: None for key in reported if key not in desired})
    return delta


def drift(inventory: Mapping[str, Mapping[str, Any]], desired: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Devices whose reported config differs from `desired`, with the delta each needs."""
    out = {}
    for device, status in inventory.items():
        delta = config_delta(status.get("config") or {}, desired)
        if delta:
            out[device] = delta
    return out
