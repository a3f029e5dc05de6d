"""Start-up from the signed registry: the one call the core's loader makes.

`prepare_plugins` refreshes trusted metadata once, makes sure every pinned
plugin (and its dependencies) is installed and verified, refuses cycles and
missing dependencies, and returns the plugins in load order. `RegistrySource`
wraps it as the loader's `PluginSource` (see sitegate/loader.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

from ..errors import Issue
from ..manifest import Manifest
from ..structure import structure
from .errors import PluginRefused
from .store import InstalledPlugin, PluginStore


def _resolve(store: PluginStore, pins: Mapping[str, str], skip: bool
             ) -> tuple[dict[str, InstalledPlugin], dict[str, PluginRefused]]:
    """Every pinned plugin and its dependencies, verified: (usable in load order, refused by domain).

    A plugin whose dependency is missing or refused is refused too, as is every
    member of a dependency cycle; the rest stay usable.
    """
    wanted = {d: "" if s is None else str(s) for d, s in pins.items()}
    found: dict[str, InstalledPlugin] = {}
    refused: dict[str, PluginRefused] = {}
    queue = list(wanted)
    while queue:
        domain = queue.pop(0)
        try:
            plugin = store.load_unverified(domain) if skip else store.ensure(domain, wanted[domain])
        except PluginRefused as exc:
            refused[domain] = exc
            continue
        found[domain] = plugin
        for dep in plugin.manifest.get("dependencies", []):
            if dep not in wanted:
                wanted[dep] = ""
                queue.append(dep)

    def refuse(domain: str, detail: str) -> None:
        refused[domain] = store._refuse("load", PluginRefused(domain, "dependencies", detail))
        found.pop(domain, None)

    changed = True
    while changed:  # a refusal propagates to everything that needs the refused plugin
        changed = False
        for domain, plugin in sorted(found.items()):
            for dep in plugin.manifest.get("dependencies", []):
                if dep in refused:
                    why = refused[dep]
                    if why.check == "not-found" and dep not in found:
                        refuse(domain, f"missing dependency: {domain} needs {dep!r}, which is neither installed "
                                       f"nor signed in the registry ({why.detail})")
                    else:
                        refuse(domain, f"{domain} needs {dep!r}, which was refused ({why.check})")
                    changed = True
                    break

    order: list[str] = []
    done: set[str] = set()

    def visit(domain: str, chain: tuple[str, ...]) -> bool:
        if domain in done:
            return True
        if domain in refused:
            return False
        if domain in chain:
            members = list(chain[chain.index(domain):])
            for i, member in enumerate(members):
                loop = members[i:] + members[:i] + [member]  # each member sees the cycle from itself
                refuse(member, f"dependency cycle: {' -> '.join(loop)}")
            return False
        plugin = found[domain]
        deps = list(plugin.manifest.get("dependencies", []))
        deps += [d for d in plugin.manifest.get("after_dependencies", []) if d in found]  # ordering only
        for dep in deps:
            if not visit(dep, chain + (domain,)):
                if domain not in refused:
                    refuse(domain, f"{domain} needs {dep!r}, which was refused ({refused[dep].check})")
                return False
        done.add(domain)
        order.append(domain)
        return True

    for domain in sorted(found):
        visit(domain, ())
    return {d: found[d] for d in order if d in found}, refused


def prepare_plugins(registry_dir: Path, state_dir: Path, pins: Mapping[str, str], *, actor: str | None = None,
                    core_api: str | None = None, root: bytes | None = None,
                    _skip_verification_for_tests: bool = False) -> dict[str, InstalledPlugin]:
    """Verified plugins for `pins` ({domain: version or range, "" for any}) and their dependencies, in load order.

    Raises `PluginRefused` naming the plugin and the failed check (the first
    pinned plugin refused); nothing is imported here. `RegistrySource` is the
    lenient form that keeps the usable plugins. `_skip_verification_for_tests`
    exists for the benchmark's baseline only: it reads installs without any check.
    """
    store = PluginStore(state_dir, registry_dir, actor=actor, core_api=core_api, root=root)
    found, refused = _resolve(store, pins, _skip_verification_for_tests)
    if refused:
        first = next((d for d in pins if d in refused), next(iter(refused)))
        raise refused[first]
    return found


def verify_and_install(registry_dir: Path, state_dir: Path, domain: str, spec: str = "", **kw) -> InstalledPlugin:
    """Install (or keep, if it already satisfies `spec`) one plugin, verified."""
    return PluginStore(state_dir, registry_dir, **kw).ensure(domain, spec)


def verify_installed(registry_dir: Path, state_dir: Path, domain: str, **kw) -> InstalledPlugin:
    """Re-hash one installed plugin against freshly refreshed trusted metadata."""
    return PluginStore(state_dir, registry_dir, **kw).verify_installed(domain)


class RegistrySource:
    """The loader's `PluginSource` for the signed registry: folders it returns are verified.

    `pins` is the site file's `plugins:` mapping plus "" for any other domain
    the site's entries use. Plugins already installed but not named are
    verified too (they may be dependencies). A refused plugin is left out of
    `available()`, reported by `problems()` and raised by `locate()`; the rest
    stay usable.
    """

    verified = True

    def __init__(self, registry_dir: Path, state_dir: Path, pins: Mapping[str, str] | None = None, *,
                 actor: str | None = None, include_installed: bool = True):
        self.registry_dir = Path(registry_dir)
        self.state_dir = Path(state_dir)
        self.pins = dict(pins or {})
        self.actor = actor
        self.include_installed = include_installed
        self._plugins: dict[str, InstalledPlugin] | None = None
        self._manifests: dict[str, Manifest] = {}
        self.refused: dict[str, PluginRefused] = {}

    def prepare(self) -> dict[str, InstalledPlugin]:
        if self._plugins is None:
            store = PluginStore(self.state_dir, self.registry_dir, actor=self.actor)
            pins = dict(self.pins)
            if self.include_installed:
                for domain in store.installed_domains():
                    pins.setdefault(domain, "")
            self._plugins, self.refused = _resolve(store, pins, False)
            self._manifests = {d: structure(p.manifest, Manifest, file=str(p.path / "manifest.json"))
                               for d, p in self._plugins.items()}
        return self._plugins

    def available(self) -> Mapping[str, Manifest]:
        self.prepare()
        return self._manifests

    def problems(self) -> list[Issue]:
        """One issue per refused plugin; `file` sits in a folder named for the domain, as the loader expects."""
        self.prepare()
        return [Issue(str(exc), str(self.state_dir / "plugins" / "installed" / domain / "manifest.json"))
                for domain, exc in sorted(self.refused.items())]

    def locate(self, domain: str) -> Path:
        plugins = self.prepare()
        if domain in self.refused:
            raise self.refused[domain]
        return plugins[domain].path

    # -- runtime upgrade (the core unloads/loads entries; these move the files and the pointer) --
    def _store(self) -> PluginStore:
        return PluginStore(self.state_dir, self.registry_dir, actor=self.actor)

    def _use(self, plugin: InstalledPlugin) -> InstalledPlugin:
        self.prepare()
        self._plugins[plugin.domain] = plugin
        self._manifests[plugin.domain] = structure(plugin.manifest, Manifest, file=str(plugin.path / "manifest.json"))
        self.refused.pop(plugin.domain, None)
        return plugin

    def stage(self, domain: str, spec: str = "") -> InstalledPlugin:
        """Verify and unpack the best version for `spec` without activating it; `locate` now returns it.

        Blocking (file and hash work): call through `trio.to_thread.run_sync`.
        The active version on disk is unchanged until `commit`.
        """
        store = self._store()
        cand = store.choose(domain, spec)
        plugin = store.install(domain, f"=={cand.version}", activate=False, action="stage")
        return self._use(plugin)

    def commit(self, domain: str) -> InstalledPlugin:
        """The staged version passed its health check: make it the active one (the old becomes previous)."""
        plugin = self.prepare()[domain]
        return self._use(self._store().activate(domain, plugin.version))

    def abandon(self, domain: str) -> InstalledPlugin:
        """The staged version failed: `locate` returns the active (old) version again, re-verified."""
        return self._use(self._store().verify_installed(domain))

    def rollback(self, domain: str) -> InstalledPlugin:
        """Activate the previous version (after a committed upgrade misbehaves later)."""
        return self._use(self._store().rollback(domain))

