"""Reading a site file into a `Site`: layers, includes and secrets composed, then structured.

`compose_site` reads every file (yamlfiles.py) and merges the layers
(layers.py) without raising for bad content; `load_site` structures the result
into schema.py's `Site` and raises ConfigError with every issue, each placed at
its file and line by the `SourceMap`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import attrs

from ..errors import ConfigError, Issue
from ..structure import structure
from . import shapes  # noqa: F401  (registers the shape checks on the shared converter)
from .layers import read_layers
from .schema import Site
from .yamlfiles import Broken, LocDict, LocList, ReadContext, Where

_INDEX_KEY = re.compile(r"\[(['\"])(.*?)\1\]")
_NAME_KEY = re.compile(r"\[(['\"])([A-Za-z_][\w-]*)\1\]")    # ['temp'], not ['press.dev0'] or ['a b']
_LEADING_KEY = re.compile(r"([A-Za-z_][\w-]*): (?=\S)")


class SourceMap:
    """Where each path of the composed document was written: ``entries[2].config.port`` -> (file, line)."""

    def __init__(self, places: dict[str, Where], default: Where):
        self.places = places
        self.default = default

    def where(self, path: str) -> Where:
        # cattrs names dict keys as ['key']; the map uses .key. Walk up to the nearest known place.
        path = _INDEX_KEY.sub(lambda m: "." + m.group(2), path).lstrip(".")
        while path:
            if path in self.places:
                return self.places[path]
            cut = max(path.rfind("."), path.rfind("["))
            path = path[:cut] if cut > 0 else ""
        return self.places.get("", self.default)

    def place(self, issue: Issue) -> Issue:
        """`issue` with its file and line filled in from its path, unless it already names a file."""
        if issue.file:
            return issue
        issue = self._at_named_key(issue)
        if "[" in issue.path:     # cattrs writes a mapping's key as ['key']: dotted like the rest
            issue = attrs.evolve(issue, path=_NAME_KEY.sub(lambda m: "." + m.group(2), issue.path))
        file, line = self.where(issue.path)
        return attrs.evolve(issue, file=file, line=line)


    def _at_named_key(self, issue: Issue) -> Issue:
        """A check that names its key first (an integration's ``ValueError("interval: expected a
        positive duration")`` at ``entries[0].config``) reads as ``entries[0].config.interval:
        expected ...``, placed at that key's line, when the key is written there."""
        m = _LEADING_KEY.match(issue.message)
        if not m or not issue.path:
            return issue
        path = f"{issue.path}.{m.group(1)}"
        if _INDEX_KEY.sub(lambda k: "." + k.group(2), path).lstrip(".") not in self.places:
            return issue
        return attrs.evolve(issue, path=path, message=issue.message[m.end():])


def _child(path: str, key: Any) -> str:
    if isinstance(key, int) and not isinstance(key, bool):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def _record(places: dict[str, Where], path: str, written: Where | None, value: Any) -> None:
    # A mapping or list pulled in from another file (!include) is placed in that file,
    # so a missing key inside a fragment names the fragment, not the line including it.
    own = getattr(value, "where", None)
    if own and (not written or own[0] != written[0]):
        places[path] = own
    elif written:
        places[path] = written


def _plain(value: Any, path: str, places: dict[str, Where], broken: list[tuple[str, Broken]]) -> Any:
    """Ordinary dicts and lists for the rest of the core, recording each path's place on the way."""
    if isinstance(value, Broken):
        broken.append((path, value))
        return None
    if isinstance(value, LocDict):
        out = {}
        for key, item in value.items():
            sub = _child(path, key)
            _record(places, sub, value.lines.get(key), item)
            out[key] = _plain(item, sub, places, broken)
        return out
    if isinstance(value, LocList):
        out_list = []
        for i, item in enumerate(value):
            sub = f"{path}[{i}]"
            _record(places, sub, value.lines[i] if i < len(value.lines) else None, item)
            out_list.append(_plain(item, sub, places, broken))
        return out_list
    return value


@attrs.frozen
class Composition:
    """A site file with its layers, includes and secrets resolved, not yet structured."""

    path: Path
    raw: Any                          # plain dicts/lists; None where a value could not be read
    sources: SourceMap
    secrets: frozenset[str]
    files: tuple[Path, ...]
    issues: tuple[Issue, ...]         # reading problems (syntax, secrets, includes, merge)
    broken: tuple[str, ...]           # paths whose value could not be read (their issue is in `issues`)

    def is_broken(self, path: str) -> bool:
        """True if `path` is at or under a value that could not be read, so a schema error there is noise."""
        for b in self.broken:
            if path == b or path.startswith(b + ".") or path.startswith(b + "[") or not b:
                return True
        return False


def compose_site(path: str | Path) -> Composition:
    """Read `path` with everything it extends, includes and refers to; never raises for bad content."""
    path = Path(path)
    ctx = ReadContext(root_dir=path.parent)
    doc = read_layers(path, ctx)
    places: dict[str, Where] = {}
    broken: list[tuple[str, Broken]] = []
    raw = _plain(doc, "", places, broken)
    if isinstance(doc, LocDict) and doc.where:
        places[""] = doc.where
    # A reading problem (a bad !secret, a missing !include) is found before paths exist;
    # the placeholder it left in the document knows its path.
    issues = list(ctx.issues)
    for where, placeholder in broken:
        if placeholder.issue is not None and not issues[placeholder.issue].path:
            issues[placeholder.issue] = attrs.evolve(issues[placeholder.issue], path=where)
    return Composition(path, raw, SourceMap(places, (str(path), 1)), frozenset(ctx.secrets),
                       tuple(ctx.files), tuple(issues), tuple(p for p, _ in broken))


@attrs.frozen
class LoadedSite:
    """A structured site and what it was made from."""

    site: Site
    path: Path
    raw: dict[str, Any]                       # the composed document, secrets resolved (never print it as is)
    secrets: frozenset[str] = frozenset()     # secret values used, for masking and redaction
    files: tuple[Path, ...] = ()              # every file read (site, layers, includes, secrets) and included folder
    sources: SourceMap | None = None          # places of paths, for errors found later (validate.py)

    def place(self, issue: Issue) -> Issue:
        return self.sources.place(issue) if self.sources else attrs.evolve(issue, file=issue.file or str(self.path))

    def issue(self, path: str, message: str) -> Issue:
        return self.place(Issue(message, path=path))


def structure_issues(comp: Composition, data: Any, cls: type, path: str = "") -> tuple[Any, list[Issue]]:
    """`data` structured into `cls` (None on failure) and the placed issues, minus noise from unreadable values."""
    try:
        return structure(data, cls, path=path), []
    except ConfigError as exc:
        return None, [comp.sources.place(i) for i in exc.issues if not comp.is_broken(i.path)]


def load_site(path: str | Path) -> LoadedSite:
    """The site at `path`, composed and structured; ConfigError lists every problem with its place."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(Issue("site file not found" if not path.exists() else "not a file", str(path)))
    comp = compose_site(path)
    issues = list(comp.issues)
    site = None
    if comp.raw is not None:
        site, more = structure_issues(comp, comp.raw, Site)
        issues.extend(more)
    if issues or site is None:
        raise ConfigError(issues or [Issue("the site file could not be read", str(path))])
    return LoadedSite(site, path, comp.raw, comp.secrets, comp.files, comp.sources)
