"""Loading integrations: find them, check them, import them, resolve their hooks once.

A `PluginSource` says where verified plugin folders come from: the signed
registry (registry/, the default) or, for plugin authors at their desk, a
source folder given explicitly with ``--dev-plugins``. Nothing is imported
before its manifest is valid, its dependencies resolve, and (for the registry)
its files match signed metadata.
"""

from __future__ import annotations

import importlib.util
import inspect
import logging
import sys
import traceback
import types
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Protocol

import attrs
import pluggy

from . import hookspecs
from .errors import ConfigError, Issue, MigrationError, PluginLoadError
from .structure import structure
from .manifest import Manifest, load_manifest, load_order
from .plugins import ProcessorType

log = logging.getLogger(__name__)

# Integrations are imported as sitegate_integrations.<domain>, never from plugins/ on sys.path,
# so the same code loads the same way from a dev folder and from a verified install.
PACKAGE = "sitegate_integrations"

DEV_WARNING = (
    "\n"
    "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
    "!! --dev-plugins: loading UNSIGNED plugin code from {dir}\n"
    "!! Nothing here was verified against the signed registry. Never do this on a\n"
    "!! gateway in the field; it is for plugin authors at their desk.\n"
    "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
)


class PluginSource(Protocol):
    """Where integration folders come from. `locate` returns a folder that is safe to import."""

    def available(self) -> Mapping[str, Manifest]:
        """Manifests of every integration this source can provide, by domain (nothing imported)."""

    def locate(self, domain: str) -> Path:
        """The folder holding `domain`'s manifest.json and package, verified if the source verifies."""


class DevFolderSource:
    """Unsigned plugin folders (``--dev-plugins DIR``): one subfolder per integration."""

    verified = False

    def __init__(self, *folders: Path, warn: bool = True):
        self.folders = [Path(f) for f in folders]
        if warn:
            for folder in self.folders:
                sys.stderr.write(DEV_WARNING.format(dir=folder))
                log.warning("loading unsigned plugins from %s (--dev-plugins)", folder)
        self._manifests: dict[str, Manifest] | None = None
        self._paths: dict[str, Path] = {}

    def available(self) -> Mapping[str, Manifest]:
        if self._manifests is None:
            found: dict[str, Manifest] = {}
            issues: list[Issue] = []
            for folder in self.folders:
                if not folder.is_dir():
                    issues.append(Issue(f"plugin folder {str(folder)!r} does not exist"))
                    continue
                for sub in sorted(folder.iterdir()):
                    if not (sub / "manifest.json").is_file():
                        continue
                    try:
                        manifest = load_manifest(sub)
                    except ConfigError as exc:
                        issues.extend(exc.issues)
                        continue
                    found.setdefault(manifest.domain, manifest)
                    self._paths.setdefault(manifest.domain, sub)
            self._manifests = found
            self._issues = issues
        return self._manifests

    def problems(self) -> list[Issue]:
        self.available()
        return list(self._issues)

    def locate(self, domain: str) -> Path:
        self.available()
        return self._paths[domain]


@attrs.define
class Integration:
    """One loaded integration: its manifest, module, and hook implementations resolved once."""

    manifest: Manifest
    path: Path
    module: types.ModuleType
    hooks: dict[str, Callable[..., Any]]
    config_class: type | None = None
    config_version: int = 1
    processor_types: dict[str, ProcessorType] = attrs.Factory(dict)

    @property
    def domain(self) -> str:
        return self.manifest.domain

    def hook(self, name: str) -> Callable[..., Any] | None:
        return self.hooks.get(name)

    def structure_config(self, config: dict[str, Any], version: int, *, path: str = "config",
                         file: str | None = None, locate: Callable[[str], int | None] | None = None) -> Any:
        """An entry's raw config, migrated to the current config version and structured.

        Raises MigrationError when migration is needed but impossible, ConfigError
        (every issue, with `path` prefixed) when the config does not fit the class.
        """
        if version > self.config_version:
            raise MigrationError(f"config version {version} is newer than {self.domain} "
                                 f"{self.manifest.version} understands ({self.config_version})")
        if version < self.config_version:
            migrate = self.hook("migrate_config")
            if migrate is None:
                raise MigrationError(f"config version {version} needs migrating to {self.config_version}, "
                                     f"but {self.domain} has no migrate_config hook")
            try:
                config = migrate(from_version=version, config=dict(config))
            except MigrationError:
                raise
            except Exception as exc:  # noqa: BLE001
                raise MigrationError(f"migrate_config from version {version} failed: {exc}") from exc
        if self.config_class is None:
            return dict(config)
        return structure(config, self.config_class, path=path, file=file, locate=locate)


def _import_package(domain: str, folder: Path) -> types.ModuleType:
    if PACKAGE not in sys.modules:
        parent = types.ModuleType(PACKAGE)
        parent.__path__ = []  # a namespace for integrations only
        sys.modules[PACKAGE] = parent
    name = f"{PACKAGE}.{domain}"
    # A reload after an upgrade must not reuse the old version's modules.
    for mod in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        del sys.modules[mod]
    init = folder / "__init__.py"
    if not init.is_file():
        raise PluginLoadError(domain, f"no __init__.py in {folder}")
    spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=[str(folder)])
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        where = _failed_at(exc, folder)
        text = exc.msg if isinstance(exc, SyntaxError) and where else exc
        raise PluginLoadError(domain, f"import failed{' at ' + where if where else ''}: "
                                      f"{type(exc).__name__}: {text}") from exc
    return module


def _failed_at(exc: BaseException, folder: Path) -> str | None:
    """`file:line` in the plugin's own folder where its import failed (the innermost such frame)."""
    if isinstance(exc, SyntaxError) and exc.filename and exc.lineno:
        return f"{exc.filename}:{exc.lineno}"
    at, folder = None, folder.resolve()
    for frame, lineno in traceback.walk_tb(exc.__traceback__):
        if Path(frame.f_code.co_filename).resolve().is_relative_to(folder):
            at = f"{frame.f_code.co_filename}:{lineno}"
    return at


def _validate_hookimpls(domain: str, module: types.ModuleType) -> None:
    marker = f"{hookspecs.PROJECT}_impl"
    for attr_name in dir(module):
        fn = getattr(module, attr_name, None)
        if not callable(fn) or getattr(fn, marker, None) is None:
            continue
        if attr_name not in hookspecs.HOOK_NAMES:
            raise PluginLoadError(domain, f"unknown hook {attr_name!r}; known hooks: "
                                          f"{', '.join(sorted(hookspecs.HOOK_NAMES))}")
        spec_fn = getattr(hookspecs, attr_name)
        spec_args = list(inspect.signature(spec_fn).parameters)
        impl_params = inspect.signature(fn).parameters
        extra = [p for p in impl_params if p not in spec_args]
        if extra:
            raise PluginLoadError(domain, f"hook {attr_name}{inspect.signature(fn)} has wrong signature: "
                                          f"argument(s) {', '.join(extra)} not in {attr_name}({', '.join(spec_args)})")
        is_async = inspect.iscoroutinefunction(fn)
        if attr_name in hookspecs.ASYNC_HOOKS and not is_async:
            raise PluginLoadError(domain, f"hook {attr_name} must be 'async def'")
        if attr_name not in hookspecs.ASYNC_HOOKS and is_async:
            raise PluginLoadError(domain, f"hook {attr_name} must be a plain 'def', not 'async def'")


def _call_with(fn: Callable[..., Any], **available: Any) -> Any:
    # pluggy allows an impl to take a subset of the spec's arguments; honour that here too.
    params = inspect.signature(fn).parameters
    return fn(**{k: v for k, v in available.items() if k in params})


class Loader:
    """Loads integrations from a source into one pluggy PluginManager per site."""

    def __init__(self, source: PluginSource):
        self.source = source
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.loaded: dict[str, Integration] = {}

    def plan(self, domains: Iterable[str]) -> list[str]:
        """The load order for `domains` and their dependencies, or ConfigError naming the problem."""
        return load_order(domains, self.source.available())

    def load(self, domains: Iterable[str]) -> list[Integration]:
        out = []
        for domain in self.plan(domains):
            out.append(self.load_one(domain))
        return out

    def load_one(self, domain: str) -> Integration:
        if domain in self.loaded:
            return self.loaded[domain]
        manifest = self.source.available()[domain]
        folder = self.source.locate(domain)
        module = _import_package(domain, folder)
        _validate_hookimpls(domain, module)
        try:
            self.pm.register(module, name=domain)
        except pluggy.PluginValidationError as exc:
            raise PluginLoadError(domain, str(exc)) from exc
        hooks: dict[str, Callable[..., Any]] = {}
        for name in hookspecs.HOOK_NAMES:
            caller = getattr(self.pm.hook, name)
            for impl in caller.get_hookimpls():
                if impl.plugin_name == domain:
                    hooks[name] = impl.function
        integration = Integration(manifest, folder, module, hooks)
        if "config_schema" in hooks:
            integration.config_class = hooks["config_schema"]()
            integration.config_version = int(getattr(integration.config_class, "config_version", 1) or 1)
        if "processor_types" in hooks:
            types_ = dict(hooks["processor_types"]())
            for name, ptype in types_.items():
                if not isinstance(ptype, ProcessorType):
                    raise PluginLoadError(domain, f"processor_types()[{name!r}] is {type(ptype).__name__}, "
                                                  "expected sitegate.plugins.ProcessorType")
            integration.processor_types = types_
        self.loaded[domain] = integration
        log.debug("loaded integration %s %s from %s", domain, manifest.version, folder)
        return integration

    def unload_one(self, domain: str) -> None:
        integration = self.loaded.pop(domain, None)
        if integration is not None:
            self.pm.unregister(name=domain)

    def processor_type(self, name: str) -> tuple[Integration, ProcessorType] | None:
        for integration in self.loaded.values():
            if name in integration.processor_types:
                return integration, integration.processor_types[name]
        return None
