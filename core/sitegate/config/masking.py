"""Hiding secrets in anything shown or logged: the composed site, diagnostics bundles.

A value read through ``!secret`` is replaced by `MASK` wherever it appears as a
whole value; `LoadedSite.secrets` says which values those are.
"""

from __future__ import annotations

from typing import Any, Iterable

import yaml

MASK = "**********"


def mask_secrets(value: Any, secrets: Iterable[str]) -> Any:
    """A copy of `value` (dicts, lists, scalars) with every secret value replaced by MASK."""
    hidden = {s for s in secrets if s != ""}
    if not hidden:
        return value

    def walk(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [walk(x) for x in v]
        if v is not None and not isinstance(v, bool) and str(v) in hidden:
            return MASK
        if isinstance(v, str):
            # A secret may also sit inside a longer text (a URL with a password, a merged string).
            for s in hidden:
                if len(s) >= 4 and s in v:
                    v = v.replace(s, MASK)
        return v

    return walk(value)


def render_yaml(value: Any) -> str:
    """YAML for people: keys in the order written, block style, unicode kept."""
    return yaml.safe_dump(value, sort_keys=False, allow_unicode=True, default_flow_style=False)
