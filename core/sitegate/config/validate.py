"""Checking a structured site against the integrations that would run it, without running it.

`validate_site` is what `sitegate check` adds to loading.py's schema checks:
entry ids, integration domains, dependencies, core API ranges, plugin pins,
each entry's config (migrated, then structured by its integration's class, and the
other entries it names: `entry_references`) and routes (sinks, processor types, step parameters). It reports every problem.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import attrs
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from .. import CORE_API_VERSION
from ..errors import ConfigError, Issue, MigrationError, PluginLoadError, SitegateError
from ..loader import Integration, Loader
from ..manifest import Manifest
from ..structure import structure
from .masking import MASK, mask_secrets
from .loading import Composition, LoadedSite, compose_site, structure_issues
from .schema import EntrySpec, Route, Site


def _pin_spec(pin: str) -> SpecifierSet:
    # A bare version ("1.0.4") pins exactly; anything else is a range (">=1.2,<2").
    text = pin.strip()
    if text and text[0].isdigit():
        text = "==" + text
    return SpecifierSet(text)


class _Check:
    def __init__(self, loaded: LoadedSite, loader: Loader, entry_index: list[int] | None = None,
                 route_index: list[int] | None = None, ignore: Callable[[str], bool] | None = None):
        self.loaded = loaded
        self.ignore = ignore or (lambda path: False)
        self.site = loaded.site
        self.loader = loader
        self.issues: list[Issue] = []
        self._all_processors_loaded = False
        # Positions in the file of site.entries / site.routes, when some could not be structured.
        self.entry_index = entry_index or list(range(len(self.site.entries)))
        self.route_index = route_index or list(range(len(self.site.routes)))

    def add(self, path: str, message: str) -> None:
        if self.ignore(path):
            return
        issue = self.loaded.issue(path, message)
        if issue not in self.issues:
            self.issues.append(issue)

    def add_placed(self, issue: Issue, prefix_path: str = "") -> None:
        if prefix_path and not issue.path:
            issue = Issue(issue.message, issue.file, issue.line, prefix_path)
        if self.ignore(issue.path):
            return
        issue = self.loaded.place(issue)
        if issue not in self.issues:
            self.issues.append(issue)

    # --- entries -------------------------------------------------------------------
    def duplicate_ids(self) -> None:
        first: dict[str, int] = {}
        for i, entry in zip(self.entry_index, self.site.entries):
            if entry.id in first:
                file, line = self.loaded.sources.where(f"entries[{first[entry.id]}].id") if self.loaded.sources \
                    else (str(self.loaded.path), None)
                self.add(f"entries[{i}].id", f"duplicate entry id {entry.id!r} (first used by entries[{first[entry.id]}]"
                                             f" at {file}:{line})")
            else:
                first[entry.id] = i

    def integrations(self) -> dict[str, Integration]:
        """Load every integration the site needs; report each domain's problem at the entry naming it."""
        source = self.loader.source
        try:
            available: dict[str, Manifest] = dict(source.available())
        except (SitegateError, OSError) as exc:
            # The registry refused (unsigned, rolled back, missing plugin): nothing can be checked further.
            self.add("plugins" if self.site.plugins else "entries", f"plugin source: {exc}")
            return {}
        problems: dict[str, list[Issue]] = {}
        for issue in getattr(source, "problems", lambda: [])():
            folder = Path(issue.file).parent.name if issue.file else ""
            problems.setdefault(folder, []).append(issue)

        # Where each domain is first asked for: an entry's domain, or a plugins: pin.
        wanted: dict[str, str] = {}
        for i, entry in zip(self.entry_index, self.site.entries):
            if entry.disabled and entry.domain not in available:
                continue   # a disabled entry may name an integration that is not installed yet
            wanted.setdefault(entry.domain, f"entries[{i}].domain")
        for domain in self.site.plugins:
            wanted.setdefault(domain, f"plugins.{domain}")

        loaded: dict[str, Integration] = {}
        for domain, path in wanted.items():
            if domain not in available and domain in problems:
                # A registry's refusal names the manifest it would have installed: not a file to look at.
                details = "; ".join(f"{p.file + ': ' if Path(p.file).exists() else ''}{p.path + ': ' if p.path else ''}"
                                    f"{p.message}" for p in problems[domain])
                self.add(path, f"integration {domain!r} cannot be used: {details}")
                continue
            try:
                order = self.loader.plan([domain])
            except ConfigError as exc:
                for issue in exc.issues:
                    message = issue.message
                    if message.startswith("unknown integration domain"):
                        names = ", ".join(sorted(available)) or "none"
                        message = f"{message}; available integrations: {names}{_first_party_hint(source, domain)}"
                    for name, found in problems.items():   # a dependency whose manifest is broken
                        if f"{name!r} is not installed" in message:
                            message += "; its manifest is invalid: " + "; ".join(
                                f"{p.file}: {p.path + ': ' if p.path else ''}{p.message}" for p in found)
                    self.add(path, message)
                continue
            for dep in order:
                manifest = available[dep]
                if not manifest.supports_core():
                    self.add(path, f"integration {dep!r} {manifest.version} requires core API {manifest.requires}, "
                                   f"but this core provides {CORE_API_VERSION}")
                    break
                if dep in loaded:
                    continue
                try:
                    loaded[dep] = self.loader.load_one(dep)
                except (PluginLoadError, ConfigError) as exc:
                    self.add(path, f"cannot load integration: {exc}")
                    break
                except Exception as exc:  # noqa: BLE001 - plugin code raised while loading
                    self.add(path, f"cannot load integration {dep!r}: {type(exc).__name__}: {exc}")
                    break
        self.pins(available)
        return loaded

    def pins(self, available: dict[str, Manifest]) -> None:
        for domain, pin in self.site.plugins.items():
            try:
                spec = _pin_spec(pin)
            except InvalidSpecifier:
                self.add(f"plugins.{domain}", f"expected a version (1.0.4) or a range ('>=1.2,<2'), got {pin!r}")
                continue
            manifest = available.get(domain)
            if manifest is None:
                continue   # reported as an unknown domain already
            try:
                ok = Version(manifest.version) in spec
            except InvalidVersion:
                ok = False
            if not ok:
                self.add(f"plugins.{domain}", f"pinned to {pin!r}, but the available {domain} is {manifest.version}")

    def entry_configs(self, integrations: dict[str, Integration]) -> None:
        for i, entry in zip(self.entry_index, self.site.entries):
            integration = integrations.get(entry.domain)
            if integration is None:
                continue
            try:
                config = integration.structure_config(entry.config, entry.version, path=f"entries[{i}].config")
            except MigrationError as exc:
                self.add(f"entries[{i}].version", f"cannot migrate the config: {exc}")
            except ConfigError as exc:
                for issue in exc.issues:
                    self.add_placed(issue, f"entries[{i}].config")
            except Exception as exc:  # noqa: BLE001 - the integration's own class raised
                self.add(f"entries[{i}].config", f"{entry.domain} config: {type(exc).__name__}: {exc}")
            else:
                for path, message in entry_references(self.site, config, f"entries[{i}].config",
                                                      unreadable=self.unreadable_ids()):
                    self.add(path, message)

    def unreadable_ids(self) -> frozenset[str]:
        """Ids of entries in the file that did not structure (reported on their own)."""
        raw = self.loaded.raw.get("entries") if isinstance(self.loaded.raw, dict) else None
        ids = {e.get("id") for e in raw if isinstance(e, dict)} if isinstance(raw, list) else set()
        return frozenset(str(i) for i in ids if i is not None) - {e.id for e in self.site.entries}

    # --- routes --------------------------------------------------------------------
    def routes(self, integrations: dict[str, Integration]) -> None:
        entries = {e.id: e for e in self.site.entries}
        sinks = sorted(e.id for e in self.site.entries
                       if e.domain in integrations and "sink" in integrations[e.domain].manifest.kinds)
        for r, route in zip(self.route_index, self.site.routes):
            for t, target in enumerate(route.to):
                path = f"routes[{r}].to[{t}]"
                entry = entries.get(target)
                if entry is None:
                    self.add(path, f"no entry {target!r}; sink entries: {', '.join(sinks) or 'none'}")
                elif entry.domain in integrations and "sink" not in integrations[entry.domain].manifest.kinds:
                    kinds = ", ".join(integrations[entry.domain].manifest.kinds)
                    self.add(path, f"entry {target!r} ({entry.domain}) is not a sink (its kinds: {kinds})")
            for s, step in enumerate(route.through):
                self.step(f"routes[{r}].through[{s}]", step, integrations)

    def find_processor(self, name: str, integrations: dict[str, Integration]) -> Any:
        """Load processor integrations the site does not name (the one called `name` first) until one offers `name`."""
        if self._all_processors_loaded:
            return None
        try:
            available = dict(self.loader.source.available())
        except (SitegateError, OSError):
            return None
        candidates = sorted((d for d, m in available.items() if "processor" in m.kinds), key=lambda d: d != name)
        for domain in candidates:
            if domain in self.loader.loaded:
                continue
            try:
                for dep in self.loader.plan([domain]):
                    if dep not in self.loader.loaded and available[dep].supports_core():
                        integrations[dep] = self.loader.load_one(dep)
            except Exception:  # noqa: BLE001 - a broken processor plugin is reported where it is named
                continue
            found = self.loader.processor_type(name)
            if found is not None:
                return found
        self._all_processors_loaded = True
        return None

    def step(self, path: str, step: Any, integrations: dict[str, Integration]) -> None:
        if not isinstance(step, dict) or len(step) != 1:
            got = f"{len(step)} keys" if isinstance(step, dict) else type(step).__name__
            self.add(path, f"expected a one-key mapping {{processor type: {{parameters}}}}, got {got}")
            return
        (name, params), = step.items()
        found = self.loader.processor_type(str(name)) or self.find_processor(str(name), integrations)
        if found is None:
            offered = sorted(n for i in integrations.values() for n in i.processor_types)
            self.add(f"{path}.{name}", f"unknown processor type {name!r}; available processor types: "
                                       f"{', '.join(offered) or 'none'}")
            return
        _, ptype = found
        if ptype.params is None:
            return
        try:
            structure({} if params is None else params, ptype.params, path=f"{path}.{name}")
        except ConfigError as exc:
            for issue in exc.issues:
                self.add_placed(issue, f"{path}.{name}")


def named_entries(config: Any) -> set[str]:
    """The ids of other entries an entry's structured `config` names (fields with names_entry)."""
    if not attrs.has(type(config)):
        return set()
    return {str(v) for f in attrs.fields(type(config))
            if "names_entry" in f.metadata and (v := getattr(config, f.name)) is not None}


def entry_references(site: Site, config: Any, path: str, *, unreadable: frozenset[str] = frozenset()) \
        -> list[tuple[str, str]]:
    """Problems with the fields of an entry's structured `config` that name another entry of `site`.

    Such a field carries ``metadata={"names_entry": ("domain", ...)}`` (the domains the named
    entry may have; empty: any): the entry must exist and be of one of them. Returns (path of the
    field, message) pairs; `unreadable`: ids of entries in the file that could not be read (their
    own problems are reported). `sitegate check` reports them; an integration may check at setup too.
    """
    if not attrs.has(type(config)):
        return []
    entries = {e.id: e for e in site.entries}
    out: list[tuple[str, str]] = []
    for field in attrs.fields(type(config)):
        if "names_entry" not in field.metadata:
            continue
        target = getattr(config, field.name)
        if target is None:
            continue
        domains = tuple(field.metadata["names_entry"])
        kind = " or ".join(domains) + " " if domains else ""
        where = f"{path}.{field.alias or field.name}"
        entry = entries.get(target)
        if entry is None and target in unreadable:
            continue
        if entry is None:
            fitting = sorted(e.id for e in site.entries if not domains or e.domain in domains)
            out.append((where, f"no entry {target!r} in the site; {kind}entries: {', '.join(fitting) or 'none'}"))
        elif domains and entry.domain not in domains:
            out.append((where, f"entry {target!r} has domain {entry.domain}, not {' or '.join(domains)}"))
    return out


def validate_site(loaded: LoadedSite, loader: Loader, *, entry_index: list[int] | None = None,
                  route_index: list[int] | None = None, ignore: Callable[[str], bool] | None = None) -> list[Issue]:
    """Every problem that would stop `loaded` from running with `loader`'s integrations, each placed.

    Imports the integrations' code (through `loader`), so hand it only a
    source whose folders may be imported (verified, or --dev-plugins on purpose).
    """
    check = _Check(loaded, loader, entry_index, route_index, ignore)
    check.duplicate_ids()
    integrations = check.integrations()
    check.entry_configs(integrations)
    check.routes(integrations)
    return [mask_issue(i, loaded.secrets) for i in check.issues]


def validate_routes(loaded: LoadedSite, loader: Loader) -> list[Issue]:
    """The problems of `loaded`'s routes only (targets that are no sink entry, unknown steps or
    parameters), each placed: what a running site warns of after each apply, without structuring
    every entry's config again as `validate_site` does."""
    check = _Check(loaded, loader, ignore=lambda path: not path.startswith("routes"))
    check.routes(check.integrations())
    return [mask_issue(i, loaded.secrets) for i in check.issues]


def mask_issue(issue: Issue, secrets: frozenset[str]) -> Issue:
    """`issue` with secret values hidden: a message quoting a bad value must not print a password."""
    message = mask_secrets(issue.message, secrets)
    for secret in secrets:
        if secret and repr(secret) in message:
            message = message.replace(repr(secret), repr(MASK))
    return issue if message == issue.message else Issue(message, issue.file, issue.line, issue.path)


def _partial_site(comp: Composition) -> tuple[Site, list[int], list[int]]:
    # The parts of a site that structure on their own, with their positions in the file,
    # so `check` can still validate good entries and routes when others are broken.
    raw = comp.raw if isinstance(comp.raw, dict) else {}

    def good(key: str, cls: type) -> tuple[list[Any], list[int]]:
        items, index = [], []
        for i, item in enumerate(raw.get(key) if isinstance(raw.get(key), list) else []):
            try:
                items.append(structure(item, cls))
                index.append(i)
            except ConfigError:
                continue
        return items, index

    entries, entry_index = good("entries", EntrySpec)
    routes, route_index = good("routes", Route)
    try:
        plugins = structure(raw.get("plugins") or {}, dict[str, str])
    except ConfigError:
        plugins = {}
    name = raw.get("site") if isinstance(raw.get("site"), str) else "?"
    return Site(site=name, entries=entries, routes=routes, plugins=plugins), entry_index, route_index


def check_site(path: str | Path, loader: Loader) -> tuple[LoadedSite | None, list[Issue]]:
    """Everything `sitegate check` reports: reading, schema and integration problems, all of them.

    Returns the loaded site (None if the file could not be read or structured) and the issues.
    """
    path = Path(path)
    if not path.is_file():
        return None, [Issue("site file not found" if not path.exists() else "not a file", str(path))]
    comp = compose_site(path)
    issues = list(comp.issues)
    if comp.raw is None:
        return None, issues
    site, more = structure_issues(comp, comp.raw, Site)
    issues.extend(more)
    entry_index = route_index = None
    whole = site is not None
    if site is None:
        site, entry_index, route_index = _partial_site(comp)
    loaded = LoadedSite(site, path, comp.raw, comp.secrets, comp.files, comp.sources)
    issues = [mask_issue(i, comp.secrets) for i in issues]
    for issue in validate_site(loaded, loader, entry_index=entry_index, route_index=route_index,
                               ignore=comp.is_broken):
        if issue not in issues:
            issues.append(issue)
    return (loaded if whole else None), _in_reading_order(issues, comp.files)


def _in_reading_order(issues: list[Issue], files: tuple[Path, ...]) -> list[Issue]:
    # File by file in the order they were read, top to bottom: the order an integrator fixes them in.
    rank = {str(f): i for i, f in enumerate(files)}
    return sorted(issues, key=lambda i: (rank.get(i.file or "", len(rank)), i.line or 0))


def _first_party_hint(source, domain: str) -> str:
    """With --dev-plugins only those folders are searched: say so when `domain` is one of sitegate's own."""
    folders = getattr(source, "folders", None)
    own = Path(__file__).resolve().parents[3] / "plugins"       # core/sitegate/config -> the checkout
    if not folders or not (own / domain / "manifest.json").is_file():
        return ""
    return (f" ({domain!r} is one of sitegate's own integrations, and --dev-plugins searches only the folders it "
            f"names: add --dev-plugins {own})")
