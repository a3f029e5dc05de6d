"""Reading a site file (provisional: plain YAML, no includes or secrets yet)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import yaml

from ..errors import ConfigError, Issue
from ..structure import structure
from .schema import Site


@attrs.frozen
class LoadedSite:
    site: Site
    path: Path
    raw: dict[str, Any]
    secrets: frozenset[str] = frozenset()


def load_site(path: str | Path) -> LoadedSite:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(Issue("site file not found", str(path))) from None
    return LoadedSite(structure(raw, Site, file=str(path)), path, raw)
