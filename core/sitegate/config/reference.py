"""The site file key reference, generated from schema.py's attrs classes.

`python -m sitegate.config.reference > docs/site-reference.md` renders every
key with its type, default and the "doc" in its field metadata; a test keeps
the committed file up to date, so documenting a key means documenting its field.
"""

from __future__ import annotations

import inspect
import sys
import typing
from typing import Any

import attrs

from ..structure import Duration
from .schema import Site

HEADER = """\
# Site file reference

Generated from `core/sitegate/config/schema.py` by
`python -m sitegate.config.reference > docs/site-reference.md`; do not edit by hand.
How to write, compose and check a site file: [integrators.md](integrators.md).

Besides the keys below, a site file may use:

| key or tag | meaning |
|---|---|
| `extends: [file.yaml, ...]` | base layers, applied in order before this file; later layers override earlier ones (entries merge by `id`, routes by `name`, mappings deep-merge, other lists are replaced, `null` removes a key, `remove: true` in an entry or route drops it) |
| `!secret name` | the value of `name` in `secrets.yaml` beside the file (or in a parent folder up to the site file's) |
| `!include file.yaml` | the content of another YAML file, relative to this one |
| `!include_dir_merge_list dir/` | the lists in every `*.yaml` file under `dir/`, concatenated in name order |
| `!include_dir_merge_named dir/` | the mappings in every `*.yaml` file under `dir/`, merged |
"""


def _type_name(kind: Any) -> str:
    origin = typing.get_origin(kind)
    args = typing.get_args(kind)
    if origin is typing.Literal:
        return "one of " + ", ".join(f"`{a}`" for a in args)
    if origin is list:
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin is dict:
        return f"mapping of {_type_name(args[0])} to {_type_name(args[1])}" if args else "mapping"
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        names = [_type_name(a) for a in args if a is not type(None)]
        return " or ".join(names) + (" or null" if type(None) in args else "")
    if kind is Duration:
        return "duration (`500ms`, `5s`, `1m`, `2h`, or seconds)"
    if getattr(kind, "__supertype__", None) is str:
        return "text (id)"
    if attrs.has(kind):
        return f"mapping ({kind.__name__})"
    plain = {str: "text", int: "integer", float: "number", bool: "boolean", typing.Any: "any"}
    if kind in plain:
        return plain[kind]
    # A small value type of its own (ByteSize, ...): its docstring says how it is written.
    doc = (inspect.getdoc(kind) or "").split("\n")[0].rstrip(".")
    return f"{getattr(kind, '__name__', kind)}" + (f" ({doc})" if doc else "")


def _value(value: Any) -> str:
    if isinstance(value, Duration):
        seconds = float(value)
        for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
            if seconds >= size and seconds % size == 0:
                return f"{seconds / size:g}{unit}"
        return f"{seconds * 1000:g}ms" if 0 < seconds < 1 else f"{seconds:g}s"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        return f'"{value}"' if value == "" else value
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_value(v)}" for k, v in value.items()) + "}"
    return str(value)


def _default(field: attrs.Attribute) -> tuple[str, Any]:
    default = field.default
    if default is attrs.NOTHING:
        return "**required**", None
    if isinstance(default, attrs.Factory):   # type: ignore[arg-type]
        default = default.factory(None) if default.takes_self else default.factory()
    if attrs.has(type(default)):
        return "(see below)", default
    return f"`{_value(default)}`", default


def _nested(kind: Any) -> type | None:
    if attrs.has(kind):
        return kind
    for arg in typing.get_args(kind):
        if attrs.has(arg):
            return arg
    return None


def _section(cls: type, path: str, out: list[str], queue: list[tuple[type, str]]) -> None:
    hints = typing.get_type_hints(cls)
    title = path or "top level"
    out.append(f"## `{title}`" if path else f"## {title}")
    out.append("")
    doc = inspect.getdoc(cls) or ""
    if doc:
        out.append(doc.splitlines()[0])
        out.append("")
    out.append("| key | type | default | meaning |")
    out.append("|---|---|---|---|")
    for field in attrs.fields(cls):
        key = field.alias if field.alias and field.alias != field.name.lstrip("_") else field.name
        key = "from" if field.name == "from_" else key
        kind = hints.get(field.name, field.type)
        default, _ = _default(field)
        meaning = " ".join(str(field.metadata.get("doc", "")).split()).replace("|", "\\|")
        nested = _nested(kind)
        sub = f"{path}.{key}" if path else key
        if nested is not None:
            sub += "[]" if typing.get_origin(kind) is list else ""
            anchor = sub.replace(".", "").replace("[]", "").lower()
            meaning += f" See [`{sub}`](#{anchor})."
            queue.append((nested, sub))
        out.append(f"| `{key}` | {_type_name(kind)} | {default} | {meaning.strip()} |")
    out.append("")


def render() -> str:
    """The whole reference as Markdown."""
    out = [HEADER]
    queue: list[tuple[type, str]] = [(Site, "")]
    seen: set[type] = set()
    while queue:
        cls, path = queue.pop(0)
        if cls in seen:
            continue
        seen.add(cls)
        _section(cls, path, out, queue)
    return "\n".join(out).rstrip("\n") + "\n"


if __name__ == "__main__":  # pragma: no cover
    sys.stdout.write(render())
