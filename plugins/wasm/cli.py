"""`sitegate wasm publish|promote|run`: sign a module into a registry, promote a shadow, try a module.

`promote` edits the site file in place, only the step's `version`/`module` (and `config`,
`module_path`) and its `shadow:` block, and checks the result parses to exactly the
promoted step before writing; otherwise it prints the edit to make by hand.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml


def module_binary(path: Path) -> bytes:
    """A .wasm file's bytes, or a .wat file compiled to them."""
    data = path.read_bytes()
    if data.startswith(b"\0asm"):
        return data
    import wasmtime
    try:
        return wasmtime.wat2wasm(data.decode("utf-8"))
    except (wasmtime.WasmtimeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: neither a .wasm binary nor valid WAT ({str(exc).splitlines()[0]})") from None


# -- publish ---------------------------------------------------------------------------------
def publish_args(p) -> None:
    p.add_argument("module", type=Path, help="the module: .wasm, or .wat (compiled first)")
    p.add_argument("--name", required=True, help="module name (the <name> in <publisher>/<name>)")
    p.add_argument("--version", required=True, help="version to publish (immutable once published)")
    p.add_argument("--key", required=True, type=Path, help="the publisher's private key file")
    p.add_argument("--registry", default="registry", type=Path, help="registry folder (default: registry)")
    p.add_argument("--online-keys", default=None, type=Path,
                   help="folder with the registry's snapshot/timestamp keys (default: REGISTRY/keys)")
    p.add_argument("--description", default="", help="one line shown to integrators")
    p.add_argument("--replace", action="store_true", help="re-sign a published version (development only)")


def publish(args) -> int:
    from sitegate.registry.keys import default_keys_dir, load_keyring, load_private_key
    from sitegate.registry.modules import publish_module
    from sitegate.registry.repository import ONLINE_ROLES, RegistryError, Repository

    try:
        signer = load_private_key(args.key)
        repo = Repository(args.registry)
        root = repo.root().signed
        online_ids = {k for role in ONLINE_ROLES for k in root.roles[role].keyids}
        keyring = {k: s for k, s in load_keyring(args.online_keys or default_keys_dir(args.registry)).items()
                   if k in online_ids}
        path, changed = publish_module(repo, module_binary(args.module), args.name, args.version, signer, keyring,
                                       description=args.description, replace=args.replace)
    except (RegistryError, ValueError, OSError) as exc:
        print(f"error: sitegate wasm publish: {exc}", file=sys.stderr)
        return 1
    print(f"{path} {'published' if changed else 'already published (unchanged)'}; pin it in a route step as "
          f"{{wasm: {{module: {path.split('/')[1]}/{args.name}, version: \"{args.version}\"}}}}")
    return 0


# -- promote ---------------------------------------------------------------------------------
def promote_args(p) -> None:
    p.add_argument("site", type=Path, help="the site file holding the route")
    p.add_argument("--route", required=True, help="the route's name (or its index, route<N>)")
    p.add_argument("--step", type=int, default=None, help="index in `through:` (default: the only wasm step "
                   "with a shadow)")
    p.add_argument("--dry-run", action="store_true", help="print the new file instead of writing it")


def _get(node: yaml.MappingNode, key: str) -> tuple[yaml.Node, yaml.Node] | None:
    for k, v in node.value:
        if isinstance(k, yaml.ScalarNode) and k.value == key:
            return k, v
    return None


def _find_step(root: yaml.Node, route: str, step: int | None, where: str) -> yaml.MappingNode:
    routes = _get(root, "routes") if isinstance(root, yaml.MappingNode) else None
    if routes is None or not isinstance(routes[1], yaml.SequenceNode):
        raise ValueError(f"{where}: no `routes:` list")
    chosen = None
    for i, r in enumerate(routes[1].value):
        name = _get(r, "name") if isinstance(r, yaml.MappingNode) else None
        if (name is not None and name[1].value == route) or route == f"route{i}":
            chosen = r
    if chosen is None:
        raise ValueError(f"{where}: no route named {route!r}")
    through = _get(chosen, "through")
    steps = through[1].value if through and isinstance(through[1], yaml.SequenceNode) else []
    candidates = []
    for j, s in enumerate(steps):
        wasm = _get(s, "wasm") if isinstance(s, yaml.MappingNode) else None
        if wasm and isinstance(wasm[1], yaml.MappingNode) and (step == j or (step is None and _get(wasm[1], "shadow"))):
            candidates.append(wasm[1])
    if len(candidates) != 1:
        raise ValueError(f"{where}: route {route!r} has {len(candidates)} wasm steps with a shadow"
                         + ("" if step is not None else "; say which with --step N"))
    return candidates[0]


def promote_text(text: str, route: str, step: int | None = None, where: str = "site") -> str:
    """The site text with the step's shadow promoted (`promote` checks the result before writing).

    Raises ValueError when the step is not found or the edit cannot be made in place.
    """
    node = _find_step(yaml.compose(text), route, step, where)
    shadow = _get(node, "shadow")
    if shadow is None or not isinstance(shadow[1], yaml.MappingNode):
        raise ValueError(f"{where}: route {route!r}: the step has no `shadow:` mapping to promote")
    edits: list[tuple[int, int, str]] = []
    for key in ("module", "version", "module_path", "config"):
        new = _get(shadow[1], key)
        if new is None:
            continue
        old = _get(node, key)
        new_text = text[new[1].start_mark.index:new[1].end_mark.index]
        if old is None:
            raise ValueError(f"{where}: route {route!r}: the shadow sets `{key}`, which the active step lacks")
        edits.append((old[1].start_mark.index, old[1].end_mark.index, new_text))
    key_node, value_node = shadow
    start, end = key_node.start_mark.index, value_node.end_mark.index
    if node.flow_style:
        comma = text.rfind(",", node.start_mark.index, start)
        start = comma if comma != -1 else start
    else:
        # The whole `shadow:` block, lines and all. A block node's end mark sits at the next
        # token (after the newline and indentation), so cut at the end of its last content line.
        start = text.rfind("\n", 0, start) + 1
        content_end = start + len(text[start:end].rstrip())
        nl = text.find("\n", content_end)
        end = len(text) if nl == -1 else nl + 1
    edits.append((start, end, ""))
    out = text
    for s, e, new in sorted(edits, reverse=True):
        out = out[:s] + new + out[e:]
    return out


def promote(args) -> int:
    from .shadow import promote_step

    try:
        text = args.site.read_text(encoding="utf-8")
        new_text = promote_text(text, args.route, args.step, str(args.site))
        old_step = _plain_step(text, args.route, args.step, str(args.site))
        wanted = promote_step(old_step)
        got = _plain_step(new_text, args.route, args.step, str(args.site), promoted=True)
    except (ValueError, OSError, yaml.YAMLError) as exc:
        print(f"error: sitegate wasm promote: {exc}", file=sys.stderr)
        return 1
    if got != wanted:
        print(f"error: sitegate wasm promote: could not edit {args.site} safely; make the step read:\n"
              f"  wasm: {json.dumps(wanted)}", file=sys.stderr)
        return 1
    if args.dry_run:
        sys.stdout.write(new_text)
        return 0
    tmp = args.site.with_name(f".{args.site.name}.promote")
    tmp.write_text(new_text, encoding="utf-8")
    tmp.replace(args.site)      # a running site sees one complete file and applies it
    print(f"{args.site}: route {args.route}: now runs {wanted.get('module') or wanted.get('module_path')} "
          f"{wanted.get('version', '')}; the shadow is gone")
    return 0


def _plain_step(text: str, route: str, step: int | None, where: str, *, promoted: bool = False) -> dict[str, Any]:
    """The step's parameters as plain data (what the site loader would read)."""
    doc = yaml.safe_load(text)
    for i, r in enumerate(doc.get("routes") or []):
        if r.get("name") == route or route == f"route{i}":
            steps = [s["wasm"] for j, s in enumerate(r.get("through") or [])
                     if isinstance(s, dict) and "wasm" in s and (step == j or step is None)]
            if step is None and not promoted:
                steps = [s for s in steps if "shadow" in s]
            if len(steps) == 1:
                return steps[0]
    raise ValueError(f"{where}: route {route!r}: the wasm step is not where expected")


# -- run: try a module on a few readings ---------------------------------------------------
def run_args(p) -> None:
    p.add_argument("module", type=Path, help="a local .wat or .wasm (runs UNSIGNED, at your desk)")
    p.add_argument("values", nargs="+", type=float, help="values of point `x`, one reading each")
    p.add_argument("--config", default="{}", help="the step's config as JSON, e.g. '{\"window\": 3}'")


def run(args) -> int:
    import time

    from sitegate.model import Batch
    from sitegate.plugins import ProcessorContext
    from sitegate.structure import structure

    from .processor import WasmParams, WasmProcessor

    events = []
    ctx = ProcessorContext(site="desk", route="desk", emit=events.append, clock=time.time)
    try:
        params = structure({"module_path": str(args.module.resolve()), "unsigned_dev": True,
                            "config": json.loads(args.config)}, WasmParams)
        step = WasmProcessor(params, ctx)
    except Exception as exc:  # noqa: BLE001 - show the author what is wrong, not a traceback
        print(f"error: {exc}", file=sys.stderr)
        return 1
    n = len(args.values)
    out = step.process(Batch("desk", ["x"] * n, list(args.values), [float(i) for i in range(n)]))
    for p, v, t, q in (out.rows() if out else []):
        print(f"{p} t={t:g} value={v:g} quality={q}")
    for e in events:
        print(f"event {e.kind} {e.severity.name.lower()}: {e.message}")
    stats = step.stats()
    print(f"fuel {stats['fuel_last_batch']}, memory {stats['memory_pages']} pages, failures {stats['failures']}"
          + (f" ({stats['last_failure']})" if stats["failures"] else ""))
    return 1 if stats["failures"] else 0
