"""Composing a site from layers: ``extends: [base.yaml, ...]`` and the merge rules.

A site file may name base layers (templates for a line or a device type);
each later layer overrides the earlier ones: mappings deep-merge, `entries`
merge by `id` and `routes` by `name`, other lists are replaced, and a null
removes a key (JSON Merge Patch, RFC 7386). Places (LocDict/LocList) survive
the merge so errors still name the layer a value came from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .yamlfiles import Broken, LocDict, LocList, ReadContext, Where, read_yaml, resolve_beside

EXTENDS = "extends"
REMOVE = "remove"
# Top-level lists merged item by item, by this key; every other list is replaced whole.
KEYED_LISTS = {"entries": "id", "routes": "name"}
_REMOVED = object()


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    return {LocDict: "mapping", LocList: "list"}.get(type(value), type(value).__name__)


def read_layers(path: Path, ctx: ReadContext, *, included_from: Where | None = None) -> Any:
    """The composed top-level mapping of `path` and everything it extends, or a Broken placeholder."""
    doc = read_yaml(path, ctx, included_from=included_from, tag=EXTENDS + ":" if included_from else "")
    if isinstance(doc, Broken):
        return doc
    if doc is None:
        return ctx.issue("the file is empty: a site file needs at least `site: <name>`", (str(path), 1))
    if not isinstance(doc, LocDict):
        return ctx.issue(f"expected a mapping of keys (site:, entries:, ...) at the top, got {_kind(doc)}",
                         doc.where if isinstance(doc, LocList) else (str(path), 1))
    bases = doc.pop(EXTENDS, None)
    base_where = doc.lines.pop(EXTENDS, None)
    composed = LocDict(where=doc.where)
    if bases is not None:
        if isinstance(bases, str):
            bases = LocList([bases], where=base_where)
            bases.lines.append(base_where)
        if not isinstance(bases, LocList) or not all(isinstance(b, str) for b in bases):
            ctx.issue(f"expected a list of file names, got {_kind(bases)}", base_where, EXTENDS)
        else:
            ctx.stack.append(path)   # a base that extends this file again is a cycle
            try:
                for i, name in enumerate(bases):
                    base_path = resolve_beside(path, name)
                    if not base_path.exists():
                        ctx.issue(f"extends {name}: no such file ({base_path})", bases.lines[i] or base_where,
                                  f"{EXTENDS}[{i}]")
                        continue
                    layer = read_layers(base_path, ctx, included_from=bases.lines[i] or base_where)
                    if not isinstance(layer, Broken):
                        composed = merge(composed, layer, ctx)
            finally:
                ctx.stack.pop()
    return merge(composed, doc, ctx)


def merge(base: LocDict, over: LocDict, ctx: ReadContext, path: str = "") -> LocDict:
    """`over` laid on `base` (neither is changed): deep merge, keyed lists by key, null removes."""
    out = LocDict(base, where=base.where or over.where)
    out.lines.update(base.lines)
    for key, value in over.items():
        where = over.lines.get(key)
        sub = f"{path}.{key}" if path else str(key)
        if value is None and key in out:
            del out[key]
            out.lines.pop(key, None)
            continue
        old = out.get(key)
        if not path and key in KEYED_LISTS and isinstance(old, LocList) and isinstance(value, LocList):
            out[key] = _merge_keyed(old, value, KEYED_LISTS[key], ctx, sub)
        elif isinstance(old, LocDict) and isinstance(value, LocDict):
            out[key] = merge(old, value, ctx, sub)
        else:
            out[key] = value
        out.lines[key] = where
    return out


def _merge_keyed(base: LocList, over: LocList, key: str, ctx: ReadContext, path: str) -> LocList:
    out = LocList(base, where=base.where)
    out.lines = list(base.lines)
    index = {item.get(key): i for i, item in enumerate(out) if isinstance(item, LocDict) and item.get(key) is not None}
    for j, item in enumerate(over):
        ident = item.get(key) if isinstance(item, LocDict) else None
        if ident is None or ident not in index:
            if isinstance(item, LocDict) and item.get(REMOVE) is True:
                ctx.issue(f"nothing to remove: no {key} {ident!r} in the layers this file extends",
                          over.lines[j], f"{path}[{j}]")
                continue
            index[ident] = len(out)
            out.append(item)
            out.lines.append(over.lines[j])
            continue
        i = index[ident]
        if item.get(REMOVE) is True:
            out[i] = _REMOVED   # placeholder keeps indexes stable until the end
            continue
        out[i] = merge(out[i], item, ctx, f"{path}[{i}]") if isinstance(out[i], LocDict) else item
        out.lines[i] = over.lines[j]
    kept = LocList(where=out.where)
    for item, line in zip(out, out.lines):
        if item is not _REMOVED:
            kept.append(item)
            kept.lines.append(line)
    return kept
