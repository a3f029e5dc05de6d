"""Reading YAML site files and their fragments, remembering where every value came from.

Mappings and lists come back as `LocDict`/`LocList`, which record the file and
line of each key or item, so layers.py can merge them and loading.py can name
the place of any problem. Home Assistant's tags are understood here: ``!secret``,
``!include``, ``!include_dir_merge_list`` and ``!include_dir_merge_named``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import attrs
import yaml

from ..errors import Issue

Where = tuple[str, int]   # (file, 1-based line)

SECRETS_FILE = "secrets.yaml"


class LocDict(dict):
    """A mapping read from YAML: `where` is its own place, `lines[key]` the place of each key."""

    def __init__(self, *args: Any, where: Where | None = None, **kw: Any):
        super().__init__(*args, **kw)
        self.where: Where | None = where
        self.lines: dict[Any, Where] = {}


class LocList(list):
    """A list read from YAML: `where` is its own place, `lines[i]` the place of item i."""

    def __init__(self, *args: Any, where: Where | None = None):
        super().__init__(*args)
        self.where: Where | None = where
        self.lines: list[Where | None] = []


class Broken:
    """Stands where a value could not be read (bad !secret, missing !include).

    Its issue is already recorded; `issue` is that issue's index in
    ReadContext.issues, so the issue can be given the value's path later.
    """

    __slots__ = ("issue",)

    def __init__(self, issue: int | None = None):
        self.issue = issue

    def __repr__(self) -> str:
        return f"Broken({self.issue})"


BROKEN = Broken()   # a value whose issue was recorded elsewhere (a broken secrets file)


@attrs.define
class ReadContext:
    """What reading one site (all its files) accumulates: problems, secrets used, files read."""

    root_dir: Path                                  # folder of the site file; secrets are looked up to here
    issues: list[Issue] = attrs.Factory(list)
    secrets: set[str] = attrs.Factory(set)          # secret VALUES used, for masking and redaction
    files: list[Path] = attrs.Factory(list)         # every file (and included folder) read, for `run` to watch
    stack: list[Path] = attrs.Factory(list)         # the include chain, to refuse cycles
    _secret_files: dict[Path, dict | None] = attrs.Factory(dict)

    def issue(self, message: str, where: Where | None, path: str = "") -> Broken:
        file, line = where if where else (None, None)
        self.issues.append(Issue(message, file, line, path))
        return Broken(len(self.issues) - 1)

    def saw(self, path: Path) -> None:
        if path not in self.files:
            self.files.append(path)


def _where(loader: "_SiteLoader", node: yaml.Node) -> Where:
    return (loader.file, node.start_mark.line + 1)


class _SiteLoader(yaml.SafeLoader):
    """A SafeLoader that knows its file and the shared ReadContext, and records places."""

    def __init__(self, stream: str, path: Path, ctx: ReadContext):
        super().__init__(stream)
        self.path = path
        self.file = str(path)
        self.ctx = ctx


def _construct_map(loader: _SiteLoader, node: yaml.MappingNode):
    data = LocDict(where=_where(loader, node))
    yield data
    # Keys written here, as opposed to those a YAML merge key (<<: *anchor) brings in:
    # only a key written twice here is a mistake; overriding a merged key is the point of <<.
    written = {id(k) for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge"}
    seen: dict[Any, int] = {}
    loader.flatten_mapping(node)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if isinstance(key, (LocDict, LocList)) or not isinstance(key, (str, int, float, bool, type(None))):
            loader.ctx.issue("a mapping key must be a plain value, not a mapping or list", _where(loader, key_node))
            continue
        if id(key_node) in written:
            if key in seen:
                loader.ctx.issue(f"duplicate key {key!r} (first at line {seen[key]}); YAML would silently keep "
                                 "the last", _where(loader, key_node))
            seen[key] = key_node.start_mark.line + 1
        data[key] = loader.construct_object(value_node, deep=False)
        data.lines[key] = _where(loader, key_node)


def _construct_seq(loader: _SiteLoader, node: yaml.SequenceNode):
    data = LocList(where=_where(loader, node))
    yield data
    for item in node.value:
        data.append(loader.construct_object(item, deep=False))
        data.lines.append(_where(loader, item))


def _scalar_argument(loader: _SiteLoader, node: yaml.Node, tag: str) -> str | None:
    if not isinstance(node, yaml.ScalarNode) or not str(node.value).strip():
        loader.ctx.issue(f"{tag} needs a name after it, such as `{tag} {'db_password' if tag == '!secret' else 'file.yaml'}`",
                         _where(loader, node))
        return None
    return str(loader.construct_scalar(node)).strip()


def _secret_dirs(start: Path, root: Path) -> list[Path]:
    # As Home Assistant does: the including file's folder, then its parents up to the
    # site file's folder. A file outside that folder (a shared template) looks beside
    # itself, then in the site's folder, never in folders above the site.
    here, top = start.resolve(), root.resolve()
    if here != top and top not in here.parents:
        return [start] if start == root else [start, root]
    dirs = [start]
    while Path(os.path.normpath(dirs[-1])).resolve() != top:
        dirs.append(Path(os.path.normpath(dirs[-1] / "..")))
    return dirs


def _read_secrets_file(path: Path, ctx: ReadContext) -> dict | None:
    if path in ctx._secret_files:
        return ctx._secret_files[path]
    ctx.saw(path)
    data: dict | None = None
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        ctx.issue(f"YAML syntax error: {exc.problem}" + (f" (column {mark.column + 1})" if mark else ""),
                  (str(path), mark.line + 1 if mark else 1))
    except (OSError, yaml.YAMLError) as exc:
        ctx.issue(f"cannot read secrets file: {exc}", (str(path), 1))
    else:
        if loaded is None:
            data = {}
        elif isinstance(loaded, dict):
            data = loaded
        else:
            ctx.issue(f"a secrets file must be a mapping of name: value, got {type(loaded).__name__}", (str(path), 1))
    ctx._secret_files[path] = data
    return data


def _construct_secret(loader: _SiteLoader, node: yaml.Node) -> Any:
    name = _scalar_argument(loader, node, "!secret")
    if name is None:
        return BROKEN
    ctx = loader.ctx
    looked: list[Path] = []
    for folder in _secret_dirs(loader.path.parent, ctx.root_dir):
        candidate = folder / SECRETS_FILE
        if not candidate.is_file():
            continue
        looked.append(candidate)
        secrets = _read_secrets_file(candidate, ctx)
        if secrets is None:
            return BROKEN   # its own syntax issue is recorded
        if name in secrets:
            value = secrets[name]
            if isinstance(value, (dict, list)) or value is None:
                return ctx.issue(f"secret {name!r} in {candidate} must be a single value (text or number), "
                                 f"got {'nothing' if value is None else type(value).__name__}", _where(loader, node))
            ctx.secrets.add(str(value))
            return value
    if not looked:
        expected = loader.path.parent / SECRETS_FILE
        return ctx.issue(f"missing secrets file: !secret {name} needs {expected} (a mapping of name: value "
                         "kept out of version control)", _where(loader, node))
    return ctx.issue(f"no such secret {name!r} in {', '.join(map(str, looked))}", _where(loader, node))


def resolve_beside(file: Path, name: str) -> Path:
    """`name` relative to the folder of `file`, tidied (``a/../b`` -> ``b``) so messages show short paths."""
    target = Path(name).expanduser()
    return Path(os.path.normpath(target if target.is_absolute() else file.parent / target))


def _resolve(loader: _SiteLoader, name: str) -> Path:
    return resolve_beside(loader.path, name)


def _construct_include(loader: _SiteLoader, node: yaml.Node) -> Any:
    name = _scalar_argument(loader, node, "!include")
    if name is None:
        return BROKEN
    target = _resolve(loader, name)
    if not target.exists():
        return loader.ctx.issue(f"!include {name}: no such file ({target})", _where(loader, node))
    value = read_yaml(target, loader.ctx, included_from=_where(loader, node), tag="!include")
    if value is None:
        return loader.ctx.issue("included file is empty", (str(target), 1))
    return value


def _kind(value: Any) -> str:
    return {LocDict: "mapping", LocList: "list"}.get(type(value), type(value).__name__)


def _dir_files(folder: Path) -> list[Path]:
    files = []
    for f in sorted(folder.rglob("*")):
        rel = f.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts) or f.name == SECRETS_FILE:
            continue
        if f.is_file() and f.suffix in (".yaml", ".yml"):
            files.append(f)
    return files


def _construct_dir(loader: _SiteLoader, node: yaml.Node, tag: str, want: type) -> Any:
    name = _scalar_argument(loader, node, tag)
    if name is None:
        return BROKEN
    folder = _resolve(loader, name)
    if not folder.is_dir():
        return loader.ctx.issue(f"{tag} {name}: no such folder ({folder})", _where(loader, node))
    # Watch the folder too: its mtime changes when a fragment is added or removed.
    loader.ctx.saw(folder)
    merged: LocList | LocDict = LocList(where=_where(loader, node)) if want is LocList else LocDict(where=_where(loader, node))
    for f in _dir_files(folder):
        value = read_yaml(f, loader.ctx, included_from=_where(loader, node), tag=tag)
        if value is None or isinstance(value, Broken):
            continue   # an empty fragment contributes nothing; a broken one has its issue recorded
        if not isinstance(value, want):
            loader.ctx.issue(f"{tag} expects each file to hold a {'list' if want is LocList else 'mapping'}, "
                             f"got {_kind(value)}", getattr(value, "where", None) or (str(f), 1))
            continue
        if isinstance(merged, LocList):
            merged.extend(value)
            merged.lines.extend(value.lines)
        else:
            for key, item in value.items():
                if key in merged:
                    first = merged.lines[key]
                    loader.ctx.issue(f"duplicate key {key!r} (also in {first[0]}:{first[1]})", value.lines[key])
                merged[key] = item
                merged.lines[key] = value.lines[key]
    return merged


_SiteLoader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_SiteLoader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)
def _construct_unknown(loader: _SiteLoader, suffix: str, node: yaml.Node) -> Any:
    return loader.ctx.issue(f"unknown tag !{suffix}; sitegate knows {', '.join(TAGS)}", _where(loader, node))


TAGS = ("!secret", "!include", "!include_dir_merge_list", "!include_dir_merge_named")

_SiteLoader.add_multi_constructor("!", _construct_unknown)
_SiteLoader.add_constructor("!secret", _construct_secret)
_SiteLoader.add_constructor("!include", _construct_include)
_SiteLoader.add_constructor("!include_dir_merge_list",
                            lambda loader, node: _construct_dir(loader, node, "!include_dir_merge_list", LocList))
_SiteLoader.add_constructor("!include_dir_merge_named",
                            lambda loader, node: _construct_dir(loader, node, "!include_dir_merge_named", LocDict))


def read_yaml(path: Path, ctx: ReadContext, *, included_from: Where | None = None, tag: str = "") -> Any:
    """The value of one YAML file: LocDict/LocList/scalars, None if empty, a Broken placeholder if unreadable.

    Problems go to ``ctx.issues``, each naming the file and line they are in;
    a file that cannot be found is reported at the tag that names it.
    """
    path = Path(path)
    key = path.resolve()
    chain = [p.resolve() for p in ctx.stack]
    if key in chain:
        cycle = " -> ".join(str(p) for p in ctx.stack[chain.index(key):] + [path])
        return ctx.issue(f"include cycle: {cycle}", included_from)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        what = f"{tag} {path}: no such file" if tag else f"no such file {path}"
        return ctx.issue(what, included_from or (str(path), None))  # type: ignore[arg-type]
    except (OSError, UnicodeDecodeError) as exc:
        return ctx.issue(f"cannot read {path}: {exc}", included_from or (str(path), None))  # type: ignore[arg-type]
    ctx.saw(path)
    loader = _SiteLoader(text, path, ctx)
    ctx.stack.append(path)
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        context = f" ({exc.context})" if exc.context and exc.problem else ""
        column = f" at column {mark.column + 1}" if mark else ""
        return ctx.issue(f"YAML syntax error: {problem}{context}{column}", (str(path), mark.line + 1 if mark else 1))
    except yaml.YAMLError as exc:
        return ctx.issue(f"YAML error: {exc}", (str(path), 1))
    finally:
        ctx.stack.pop()
        loader.dispose()
