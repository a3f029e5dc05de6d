"""What a plugin needs from its surroundings: this core's API version and Python packages.

Checked from signed facts before an artifact is even downloaded, and again
at every start (store.py), so a plugin that cannot work here is refused with
the reason instead of failing at import.
"""

from __future__ import annotations

from importlib import metadata

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from .errors import PluginRefused


def core_api_version() -> str:
    """`sitegate.CORE_API_VERSION`, read defensively (older cores did not define it)."""
    import sitegate

    return str(getattr(sitegate, "CORE_API_VERSION", "1.0"))


def check_core_api(domain: str, version: str, requires: str, core_api: str | None = None) -> None:
    core_api = core_api or core_api_version()
    try:
        ok = Version(core_api) in SpecifierSet(requires or "")
    except (InvalidSpecifier, InvalidVersion):
        raise PluginRefused(domain, "core-api", f"{domain} {version}: 'requires' {requires!r} is not a version "
                            "range such as '>=1.0,<2'") from None
    if not ok:
        raise PluginRefused(domain, "core-api", f"{domain} {version} requires core API {requires!r}, "
                            f"this core provides {core_api}")


def check_requirements(domain: str, version: str, requirements: list[str]) -> None:
    """Every PEP 508 requirement must be satisfied by an installed distribution."""
    problems = []
    for text in requirements or []:
        try:
            req = Requirement(text)
        except InvalidRequirement as exc:
            problems.append(f"{text!r} is not a valid requirement ({exc})")
            continue
        if req.marker is not None and not req.marker.evaluate():
            continue
        try:
            installed = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            problems.append(f"needs {text!r}, which is not installed (pip install '{text}')")
            continue
        if req.specifier and not req.specifier.contains(installed, prereleases=True):
            problems.append(f"needs {text!r}, but {req.name} {installed} is installed (pip install '{text}')")
    if problems:
        raise PluginRefused(domain, "requirements", f"{domain} {version}: " + "; ".join(problems))
