"""Refusing values of the wrong shape, with a message an integrator understands.

cattrs, left alone, turns the text ``"press/*"`` into the list ``['p', 'r', ...]``
and reports a list where a mapping belongs as an AttributeError. The hooks here
(registered on the shared converter when the config package is imported) say
"expected a list, got text 'press/*'" instead. Route keys that name one or more
things (`from`, `to`, `tags`) also accept a single text.
"""

from __future__ import annotations

import collections.abc
import typing
from typing import Any

import attrs
from cattrs.cols import list_structure_factory, mapping_structure_factory

from ..structure import converter
from .schema import Route

_LISTS = {list, typing.List, collections.abc.Sequence, collections.abc.MutableSequence}
_MAPPINGS = {dict, typing.Dict, collections.abc.Mapping, collections.abc.MutableMapping}


def describe(value: Any) -> str:
    """A value as a message names it: `nothing`, `text 'x'`, `list [1, 2]`, `mapping {...}`."""
    if value is None:
        return "nothing"
    kind = {str: "text", bool: "boolean", int: "integer", float: "number", list: "list",
            dict: "mapping"}.get(type(value), type(value).__name__)
    shown = repr(value)
    return f"{kind} {shown if len(shown) <= 60 else shown[:57] + '...'}"


def _is_list(kind: Any) -> bool:
    return typing.get_origin(kind) in _LISTS or kind in _LISTS


def _is_mapping(kind: Any) -> bool:
    return typing.get_origin(kind) in _MAPPINGS or kind in _MAPPINGS


def _list_hook(kind: Any):
    base = list_structure_factory(kind, converter)

    def structure(value: Any, t: Any) -> Any:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"expected a list, got {describe(value)}")
        return base(value, t)
    return structure


def _mapping_hook(kind: Any):
    base = mapping_structure_factory(kind, converter)

    def structure(value: Any, t: Any) -> Any:
        if not isinstance(value, dict):
            raise ValueError(f"expected a mapping, got {describe(value)}")
        return base(value, t)
    return structure


def _attrs_hook(cls: type):
    base = converter.gen_structure_attrs_fromdict(cls)

    def structure(value: Any, t: Any) -> Any:
        if not isinstance(value, dict):
            raise ValueError(f"expected a mapping, got {describe(value)}")
        return base(value, t)
    return structure


def _route_hook():
    base = converter.get_structure_hook(Route)
    one_or_many = ("from", "to", "tags")

    def structure(value: Any, t: Any) -> Route:
        if not isinstance(value, dict):
            raise ValueError(f"expected a route mapping (from, through, to, ...), got {describe(value)}")
        value = {k: [v] if k in one_or_many and isinstance(v, str) else v for k, v in value.items()}
        return base(value, t)
    return structure


converter.register_structure_hook_factory(_is_list, _list_hook)
converter.register_structure_hook_factory(_is_mapping, _mapping_hook)
converter.register_structure_hook_factory(lambda t: attrs.has(t) and t is not Route, _attrs_hook)
converter.register_structure_hook(Route, _route_hook())
