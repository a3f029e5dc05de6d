"""Shared helpers of the data-plane tests: the fixture plugins and reading what a file sink got."""

from __future__ import annotations

import json
from pathlib import Path



FIXTURES = Path(__file__).parent / "fixture_plugins"


def sink_lines(path: Path) -> list[dict]:
    """Every complete JSON line a file sink wrote (a line cut by a kill is ignored)."""
    if not Path(path).exists():
        return []
    out = []
    for line in Path(path).read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return out


def acked(path: Path) -> set[tuple[str, int]]:
    """(device, seq) of every reading the acklog adapter saw acknowledged."""
    out = set()
    if not Path(path).exists():
        return out
    for line in Path(path).read_text().splitlines():
        parts = line.split()
        if len(parts) != 3:
            continue      # cut by a kill mid-write
        d, s, n = parts[0], int(parts[1]), int(parts[2])
        out.update((d, s + i) for i in range(n))
    return out


