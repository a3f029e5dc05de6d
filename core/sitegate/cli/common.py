"""Command-line pieces shared by the site verbs (check, config, diff) and `run`.

Where plugin code comes from is decided in one place, `plugin_source_from_args`:
the signed registry by default, unsigned folders only with ``--dev-plugins``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import SitegateError

if TYPE_CHECKING:  # pragma: no cover
    from ..config import LoadedSite
    from ..loader import PluginSource


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


def plugin_source_from_args(args: argparse.Namespace, loaded: "LoadedSite | None" = None) -> "PluginSource":
    """The plugin source the arguments ask for. The registry needs the site's pins: from `loaded`,
    or read from ``args.site``. Raises SitegateError ("no plugin source: ...") when there is none."""
    dev = list(getattr(args, "dev_plugins", None) or [])
    if dev:
        from ..loader import DevFolderSource
        return DevFolderSource(*dev)   # prints the loud warning
    registry = Path(getattr(args, "registry", None) or "registry")
    hint = "give --registry DIR, or --dev-plugins DIR to load unsigned plugin folders at your desk"
    try:
        from ..registry.source import RegistrySource
    except ImportError as exc:
        raise SitegateError(f"no plugin source: the signed registry is not available in this build ({exc}); "
                            f"{hint}") from None
    if not registry.is_dir():
        raise SitegateError(f"no plugin source: no signed registry at {registry}; {hint}")
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
