"""Command-line pieces shared by the site verbs (check, config, diff) and `run`.

Where plugin code comes from is decided in one place, `plugin_source_from_args`:
the signed registry by default, unsigned folders only with ``--dev-plugins``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import SitegateError

if TYPE_CHECKING:  # pragma: no cover
    from ..config import LoadedSite
    from ..loader import PluginSource


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """``counted(1, "entry", "entries")`` is "1 entry", ``counted(2, "route")`` "2 routes": what
    `sitegate check` and `sitegate run` print, read by people and quoted in the docs."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


def add_plugin_source_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("plugin source (default: the signed registry)")
    group.add_argument("--dev-plugins", metavar="DIR", type=Path, action="append", default=[],
                       help="load UNSIGNED integration folders from DIR (one subfolder each); for plugin authors "
                            "at their desk, never in the field. May be given more than once.")
    group.add_argument("--registry", metavar="DIR", type=Path, default=Path("registry"),
                       help="the signed registry folder (default: ./registry)")
    group.add_argument("--state", metavar="DIR", type=Path, default=None,
                       help="where verified plugins are installed (default: the site's state folder, "
                            "runtime.state_dir or .sitegate/ beside the site file)")


_SOURCE_HINT = "give --registry DIR, or --dev-plugins DIR to load unsigned plugin folders at your desk"


def check_registry_folder(registry: Path) -> None:
    """Raise SitegateError ("no plugin source: ...") unless `registry` is a folder, saying where it was
    looked for (a relative default is relative to the current folder) and how to get one."""
    if registry.is_dir():
        return
    where = str(registry) if registry.is_absolute() else f"{registry} ({registry.absolute()})"
    raise SitegateError(f"no plugin source: no signed registry at {where}; {_SOURCE_HINT} (in a sitegate "
                        f"checkout `make registry` makes the development one; `sitegate registry init` a new one)")


def dev_folder_source(dirs: list[Path]) -> "PluginSource":
    """The unsigned source of ``--dev-plugins DIR...`` (it prints the loud warning). Each DIR holds
    integration folders; a DIR that is missing, or is an integration folder itself, is refused."""
    for folder in dirs:
        if not folder.is_dir():
            what = "not a folder" if folder.exists() else "no such folder"
            raise SitegateError(f"--dev-plugins {folder}: {what} ({folder.absolute()})")
        if (folder / "manifest.json").is_file():
            parent = folder.absolute().parent
            shown = os.path.relpath(parent) if parent.is_relative_to(Path.cwd()) else str(parent)
            raise SitegateError(f"--dev-plugins {folder}: this is an integration folder itself (it holds "
                                f"manifest.json); give the folder that holds it: --dev-plugins {shown}")
    from ..loader import DevFolderSource
    return DevFolderSource(*dirs)


def plugin_source_from_args(args: argparse.Namespace, loaded: "LoadedSite | None" = None) -> "PluginSource":
    """The plugin source the arguments ask for. The registry needs the site's pins: from `loaded`,
    or read from ``args.site``. Raises SitegateError ("no plugin source: ...") when there is none."""
    dev = list(getattr(args, "dev_plugins", None) or [])
    if dev:
        return dev_folder_source(dev)
    registry = Path(getattr(args, "registry", None) or "registry")
    try:
        from ..registry.source import RegistrySource
    except ImportError as exc:
        raise SitegateError(f"no plugin source: the signed registry is not available in this build ({exc}); "
                            f"{_SOURCE_HINT}") from None
    check_registry_folder(registry)
    from ..config import load_site
    from ..config.changes import state_dir_for
    if loaded is None:
        loaded = load_site(args.site)
    pins = dict(loaded.site.plugins)
    for entry in loaded.site.entries:
        if not entry.disabled:
            pins.setdefault(entry.domain, "")
    # Processor types used in routes come from integrations no entry names; first-party ones are
    # named for their type (deadband, window, ...), so those are installed (verified) too.
    steps = {str(name) for route in loaded.site.routes for step in route.through
             for name in (step if isinstance(step, dict) else {})}
    if steps:
        from ..registry.repository import Repository
        try:
            published = {p.domain for p in Repository(registry).plugins()}   # only to choose; install verifies
        except Exception:  # noqa: BLE001 - an unreadable registry is reported by the install itself
            published = set()
        for name in sorted(steps & published):
            pins.setdefault(name, "")
    state = getattr(args, "state", None) or state_dir_for(loaded)
    return RegistrySource(registry, Path(state), pins)
