"""Integration manifests (``manifest.json``) and the order dependencies impose.

Modelled on Home Assistant's manifest. Read and validated before any plugin
code is imported; loader.py uses `load_order` to refuse cycles and missing
dependencies before anything starts.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterable, Mapping

import attrs
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import Version

from . import CORE_API_VERSION
from .errors import ConfigError, Issue
from .structure import structure

KINDS = ("adapter", "processor", "sink", "update_handler")
IOT_CLASSES = ("local_polling", "local_push", "cloud_polling", "cloud_push", "calculated")
_SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$")
_DOMAIN = re.compile(r"^[a-z][a-z0-9_]*$")


def _check_domain(_, attribute, value):
    if not _DOMAIN.match(value):
        raise ValueError(f"expected a lowercase identifier (a-z, 0-9, _), got {value!r}")


def _check_semver(_, attribute, value):
    if not _SEMVER.match(value):
        raise ValueError(f"expected a semantic version such as 1.2.3, got {value!r}")


def _check_kinds(_, attribute, value):
    if not value:
        raise ValueError(f"expected at least one of {', '.join(KINDS)}")
    bad = [k for k in value if k not in KINDS]
    if bad:
        raise ValueError(f"expected kinds from {', '.join(KINDS)}, got {', '.join(map(repr, bad))}")


def _check_spec(_, attribute, value):
    try:
        SpecifierSet(value)
    except InvalidSpecifier:
        raise ValueError(f"expected a version range such as '>=1.0,<2', got {value!r}") from None


def _check_iot_class(_, attribute, value):
    if value is not None and value not in IOT_CLASSES:
        raise ValueError(f"expected one of {', '.join(IOT_CLASSES)}, got {value!r}")


@attrs.frozen(slots=True)
class Manifest:
    domain: str = attrs.field(validator=_check_domain)
    name: str
    version: str = attrs.field(validator=_check_semver)
    kinds: list[str] = attrs.field(validator=_check_kinds)
    requires: str = attrs.field(validator=_check_spec)
    dependencies: list[str] = attrs.Factory(list)
    after_dependencies: list[str] = attrs.Factory(list)
    requirements: list[str] = attrs.Factory(list)
    codeowners: list[str] = attrs.Factory(list)
    documentation: str = ""
    iot_class: str | None = attrs.field(default=None, validator=_check_iot_class)

    def supports_core(self, core_api: str = CORE_API_VERSION) -> bool:
        return Version(core_api) in SpecifierSet(self.requires)


def parse_manifest(data: object, *, file: str | None = None) -> Manifest:
    manifest = structure(data, Manifest, file=file)
    if not manifest.supports_core():
        raise ConfigError(Issue(
            f"plugin {manifest.domain!r} requires core API {manifest.requires}, "
            f"but this core provides {CORE_API_VERSION}", file, None, "requires"))
    return manifest


def load_manifest(folder: Path) -> Manifest:
    path = Path(folder) / "manifest.json"
    if not path.is_file():
        raise ConfigError(Issue("no manifest.json: an integration needs one", str(path)))
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(Issue(f"not valid JSON: {exc.msg}", str(path), exc.lineno)) from None
    manifest = parse_manifest(data, file=str(path))
    if manifest.domain != Path(folder).name and not (Path(folder) / ".artifact").exists():
        raise ConfigError(Issue(f"domain {manifest.domain!r} does not match the folder name {Path(folder).name!r}",
                                str(path), None, "domain"))
    return manifest


def load_order(wanted: Iterable[str], manifests: Mapping[str, Manifest]) -> list[str]:
    """Domains to load, dependencies first. Refuses missing dependencies and cycles, naming the chain.

    `after_dependencies` order loading when both are present but do not pull
    the other in, as in Home Assistant.
    """
    order: list[str] = []
    done: set[str] = set()
    issues: list[Issue] = []

    def visit(domain: str, chain: tuple[str, ...]) -> None:
        if domain in done:
            return
        if domain in chain:
            cycle = " -> ".join(chain[chain.index(domain):] + (domain,))
            issues.append(Issue(f"dependency cycle: {cycle}"))
            return
        manifest = manifests.get(domain)
        if manifest is None:
            if chain:
                issues.append(Issue(f"missing dependency: {' -> '.join(chain + (domain,))} "
                                    f"({domain!r} is not installed)"))
            else:
                issues.append(Issue(f"unknown integration domain {domain!r}"))
            return
        for dep in manifest.dependencies:
            visit(dep, chain + (domain,))
        for dep in manifest.after_dependencies:
            if dep in wanted_set:
                visit(dep, chain + (domain,))
        done.add(domain)
        order.append(domain)

    wanted_set = set(wanted)
    for domain in sorted(wanted_set):
        visit(domain, ())
    if issues:
        unique = list(dict.fromkeys(issues))
        raise ConfigError(unique)
    return order
