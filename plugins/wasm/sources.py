"""Where a step's module bytes come from: the signed registry, or (at a desk) a local file.

Signed: `module: acme/moving_average` + `version: "1.0.0"`, fetched and verified by
sitegate.registry.modules.ModuleStore. Unsigned: `module_path:` only with
`unsigned_dev: true`, and loudly logged, like `--dev-plugins`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import attrs

log = logging.getLogger(__name__)


@attrs.frozen(slots=True)
class LoadedModule:
    data: bytes = attrs.field(repr=False)
    label: str            # "acme/moving_average 1.0.0" or "UNSIGNED path/to/m.wat"
    version: str = ""
    signed: bool = True
    path: str = ""        # the file of an unsigned module


def warn_unsigned(route: str, active: LoadedModule, shadow: LoadedModule | None = None) -> None:
    """One loud warning per step load, naming every unsigned module of the step: the active one and
    its shadow candidate (often the same file at a desk) would otherwise say the same thing twice."""
    parts = [f"module from {active.path}"] if not active.signed else []
    if shadow is not None and not shadow.signed:
        same = not active.signed and shadow.path == active.path
        parts.append("shadow candidate from the same file" if same else f"shadow candidate from {shadow.path}")
    if parts:
        log.warning("!!! route %s runs an UNSIGNED WebAssembly %s (unsigned_dev: true) — "
                    "development only, never in the field !!!", route, " and an UNSIGNED ".join(parts))


def _host(ctx: Any) -> Any:
    # ProcessorContext carries no registry; the data plane's bound `emit` leads to the host.
    # A core `ctx.modules` (asked for in the report) makes this unnecessary.
    plane = getattr(getattr(ctx, "emit", None), "__self__", None)
    return getattr(plane, "host", None)


def module_store(ctx: Any) -> Any:
    """An object with `fetch(ref, version)` returning a VerifiedModule, for this site."""
    found = getattr(ctx, "modules", None)
    if found is not None:
        return found
    host = _host(ctx)
    source = getattr(getattr(host, "loader", None), "source", None)
    registry_dir = getattr(source, "registry_dir", None)
    state_dir = getattr(source, "state_dir", None)
    if registry_dir is None or state_dir is None:
        raise ValueError("signed modules come from the signed registry, and this site runs without one "
                         "(unsigned plugin folders?); run with --registry DIR, or at your desk use "
                         "`module_path:` with `unsigned_dev: true`")
    from sitegate.registry.modules import ModuleStore
    return ModuleStore(Path(state_dir), Path(registry_dir), actor="wasm")


def site_folder(ctx: Any) -> Path:
    host = _host(ctx)
    path = getattr(getattr(host, "loaded", None), "path", None)
    return Path(path).parent if path else Path.cwd()


def load_module(ctx: Any, *, module: str | None, version: str | None, module_path: str | None,
                unsigned_dev: bool, where: str) -> LoadedModule:
    if module_path is not None:
        if not unsigned_dev:
            raise ValueError(f"{where}.module_path: loads an UNSIGNED module; allowed only with "
                             "`unsigned_dev: true` in the same step (never in the field), else publish it and "
                             "pin `module:` + `version:`")
        path = Path(module_path).expanduser()
        if not path.is_absolute():
            path = site_folder(ctx) / path
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ValueError(f"{where}.module_path: cannot read {path} ({exc.strerror or exc})") from None
        return LoadedModule(data, f"UNSIGNED {path.name}", "dev", signed=False, path=str(path))   # warn_unsigned says so
    verified = module_store(ctx).fetch(module, str(version))
    return LoadedModule(verified.data, f"{verified.ref} {verified.version}", verified.version)
