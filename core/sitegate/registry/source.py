"""Start-up from the signed registry: the one call the core's loader makes.

`prepare_plugins` refreshes trusted metadata once, makes sure every pinned
plugin (and its dependencies) is installed and verified, refuses cycles and
missing dependencies, and returns the plugins in load order. `RegistrySource`
wraps it as the loader's `PluginSource` (see sitegate/loader.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

from ..manifest import Manifest
from ..structure import structure
from .errors import PluginRefused
from .store import InstalledPlugin, PluginStore


def _load_order(store: PluginStore, plugins: Mapping[str, InstalledPlugin]) -> list[str]:
    order: list[str] = []
    done: set[str] = set()

    def visit(domain: str, chain: tuple[str, ...]) -> None:
        if domain in done:
            return
        if domain in chain:
            cycle = " -> ".join(chain[chain.index(domain):] + (domain,))
            exc = PluginRefused(chain[chain.index(domain)], "dependencies", f"dependency cycle: {cycle}")
            raise store._refuse("load", exc) from None
        manifest = plugins[domain].manifest
        for dep in manifest.get("dependencies", []):
            visit(dep, chain + (domain,))
        for dep in manifest.get("after_dependencies", []):
            if dep in plugins:  # ordering only, as in Home Assistant
                visit(dep, chain + (domain,))
        done.add(domain)
        order.append(domain)

    for domain in sorted(plugins):
        visit(domain, ())
    return order


def prepare_plugins(registry_dir: Path, state_dir: Path, pins: Mapping[str, str], *, actor: str | None = None,
                    core_api: str | None = None, root: bytes | None = None,
                    _skip_verification_for_tests: bool = False) -> dict[str, InstalledPlugin]:
    """Verified plugins for `pins` ({domain: version or range, "" for any}) and their dependencies, in load order.

    Raises `PluginRefused` naming the plugin and the failed check; nothing is
    imported here. `_skip_verification_for_tests` exists for the benchmark's
    baseline only: it reads installed folders without any check.
    """
    store = PluginStore(state_dir, registry_dir, actor=actor, core_api=core_api, root=root)
    wanted = {d: s or "" for d, s in pins.items()}
    needed_by: dict[str, str] = {}
    found: dict[str, InstalledPlugin] = {}
    queue = list(wanted)
    while queue:
        domain = queue.pop(0)
        try:
            if _skip_verification_for_tests:
                plugin = store.load_unverified(domain)
            else:
                plugin = store.ensure(domain, wanted[domain])
        except PluginRefused as exc:
            if domain in needed_by and exc.check == "not-found":
                parent = needed_by[domain]
                dep_exc = PluginRefused(parent, "dependencies", f"missing dependency: {parent} needs {domain!r}, "
                                        f"which is neither installed nor signed in the registry ({exc.detail})")
                raise store._refuse("load", dep_exc) from None
            raise
        found[domain] = plugin
        for dep in plugin.manifest.get("dependencies", []):
            if dep not in wanted:
                wanted[dep] = ""
                needed_by[dep] = domain
                queue.append(dep)
    return {d: found[d] for d in _load_order(store, found)}


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
    verified too (they may be dependencies).
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

    def prepare(self) -> dict[str, InstalledPlugin]:
        if self._plugins is None:
            pins = dict(self.pins)
            if self.include_installed:
                store = PluginStore(self.state_dir, self.registry_dir, actor=self.actor)
                for domain in store.installed_domains():
                    pins.setdefault(domain, "")
            self._plugins = prepare_plugins(self.registry_dir, self.state_dir, pins, actor=self.actor)
            self._manifests = {d: structure(p.manifest, Manifest, file=str(p.path / "manifest.json"))
                               for d, p in self._plugins.items()}
        return self._plugins

    def available(self) -> Mapping[str, Manifest]:
        self.prepare()
        return self._manifests

    def locate(self, domain: str) -> Path:
        return self.prepare()[domain].path
