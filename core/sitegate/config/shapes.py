"""Route keys that name one or more things (`from`, `to`, `tags`) also accept a single text.

The general shape checks (a list where a list belongs, a mapping where a
mapping belongs) live on the shared converter in sitegate/structure.py.
"""

from __future__ import annotations

from typing import Any

from ..structure import converter, describe  # noqa: F401  (describe is re-exported for config messages)
from .schema import Route


def _route_hook():
    base = converter.get_structure_hook(Route)   # schema.py's (it renames from_ to `from`)
    one_or_many = ("from", "to", "tags")

    def structure(value: Any, t: Any) -> Route:
        if not isinstance(value, dict):
            raise ValueError(f"expected a route mapping (from, through, to, ...), got {describe(value)}")
        value = {k: [v] if k in one_or_many and isinstance(v, str) else v for k, v in value.items()}
        return base(value, t)
    return structure


converter.register_structure_hook(Route, _route_hook())
