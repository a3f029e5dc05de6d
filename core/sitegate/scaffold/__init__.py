"""Scaffolding for `sitegate plugin new NAME --kind KIND`: a working integration from templates.

`create_integration` renders templates/<kind>/ and templates/common/ (string.Template,
``$domain`` style) into NAME/: manifest.json, __init__.py, tests/, README.md. The result
passes its own tests and loads in a site as it is (tests/examples checks both).
"""

from __future__ import annotations

import importlib.machinery
import json
import re
import string
import sys
from pathlib import Path

from .. import CORE_API_VERSION
from ..errors import SitegateError

KINDS = ("adapter", "processor", "sink", "update_handler")
TEMPLATES = Path(__file__).resolve().parent / "templates"
_DOMAIN = re.compile(r"^[a-z][a-z0-9_]*$")
_IOT_CLASS = {"adapter": "local_polling", "processor": "calculated", "sink": "local_push",
              "update_handler": "local_push"}

_SITE_EXAMPLES = {
    "adapter": """site: my-site
entries:
  - id: dev
    domain: {domain}
    config: {{interval: 1s, start: 0, step: 1}}""",
    "processor": """site: my-site
entries:
  - {{id: sim, domain: simulator, config: {{devices: 1, interval: 1s}}}}
  - {{id: hist, domain: history}}
routes:
  - name: scaled
    from: ["sim.*/temperature"]
    through: [{{{domain}: {{factor: 1.8, offset: 32, alert_above: 100}}}}]
    to: [hist]""",
    "sink": """site: my-site
entries:
  - {{id: sim, domain: simulator, config: {{devices: 1, interval: 1s}}}}
  - {{id: out, domain: {domain}, config: {{path: readings.jsonl}}}}
routes:
  - {{name: all, from: ["sim.*/*"], to: [out]}}""",
    "update_handler": """site: my-site
entries:
  - id: fw
    domain: {domain}
    config: {{devices: [node1, node2]}}""",
}


class ScaffoldError(SitegateError):
    """The name, kind or destination cannot be used; the message says which and why."""


def default_requires() -> str:
    """The manifest's `requires` for this core: its API version up to the next major."""
    major = int(CORE_API_VERSION.split(".")[0])
    return f">={CORE_API_VERSION},<{major + 1}"


def check_command(kind: str) -> str:
    """The `sitegate check` that loads the README's site: your folder, plus (for the kinds whose example
    uses the simulator and history) the first-party plugins of the sitegate checkout."""
    extra = ""
    if kind in ("processor", "sink"):
        plugins = _FIRST_PARTY if _FIRST_PARTY.is_dir() else "SITEGATE/plugins"
        extra = f" --dev-plugins {plugins}"
    return f"sitegate check site.yaml --dev-plugins .{extra}"


def site_example(domain: str, kind: str) -> str:
    """A site file that uses the scaffolded integration as it is (shown in its README)."""
    return _SITE_EXAMPLES[kind].format(domain=domain)


def create_integration(name: str, kind: str, dest: Path | str = ".", *, title: str | None = None,
                       owner: str = "@you") -> Path:
    """Write the integration `name` of `kind` into `dest`/`name`/ and return that folder."""
    if not _DOMAIN.match(name):
        raise ScaffoldError(f"NAME {name!r}: expected a domain of lowercase letters, digits and _, "
                            f"starting with a letter (it names the folder, the manifest and the Python package)")
    taken = _first_party_domains()
    if name in taken:
        raise ScaffoldError(f"NAME {name!r} is the domain of a first-party integration; a site can load only one "
                            f"integration per domain, so choose another (e.g. {'acme_' + name!r})")
    shadowed = _importable_elsewhere(name)
    if shadowed:
        raise ScaffoldError(f"NAME {name!r} is already the name of a Python module ({shadowed}); a plugin folder of that "
                            f"name would hide it, or be hidden by it, when its tests run, so choose another "
                            f"(e.g. {'acme_' + name!r})")
    if kind not in KINDS:
        raise ScaffoldError(f"--kind {kind!r}: expected one of {', '.join(KINDS)}")
    if not (TEMPLATES / kind).is_dir():
        raise ScaffoldError(f"the templates are missing from this installation ({TEMPLATES / kind}); "
                            "reinstall sitegate (its package data must include scaffold/templates)")
    folder = Path(dest) / name
    if folder.exists():
        raise ScaffoldError(f"{folder} exists; refusing to overwrite it (choose another NAME or --dir)")
    values = {
        "domain": name,
        "kind": kind,
        "title": title or name.replace("_", " ").capitalize(),
        "Class": "".join(part.capitalize() for part in name.split("_")) + _CLASS_SUFFIX[kind],
        "requires": default_requires(),
        "owner": owner,
        "iot_class": _IOT_CLASS[kind],
        "site_example": site_example(name, kind),
        "check": check_command(kind),
    }
    files = {
        "manifest.json": TEMPLATES / "common" / "manifest.json.tmpl",
        "README.md": TEMPLATES / "common" / "README.md.tmpl",
        "__init__.py": TEMPLATES / kind / "__init__.py.tmpl",
        f"tests/test_{name}.py": TEMPLATES / kind / "test.py.tmpl",
    }
    rendered = {rel: string.Template(src.read_text()).substitute(values) for rel, src in files.items()}
    json.loads(rendered["manifest.json"])   # a template bug must not produce a broken manifest
    for rel, text in rendered.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return folder


def _importable_elsewhere(name: str) -> str | None:
    """Where a module called `name` is importable from, not counting the current folder: the standard
    library, sitegate itself or an installed package (e.g. 'sitegate', 'json', 'trio'); None if nowhere."""
    if name in sys.stdlib_module_names or name in sys.builtin_module_names:
        return "the Python standard library"
    if name in sys.modules:
        return f"at {getattr(sys.modules[name], '__file__', None) or 'a built-in module'}"
    here = Path.cwd().resolve()
    paths = [p for p in sys.path if p and Path(p).resolve() != here]
    spec = importlib.machinery.PathFinder.find_spec(name, paths)
    return f"at {spec.origin or next(iter(spec.submodule_search_locations or []), '?')}" if spec else None


_FIRST_PARTY = Path(__file__).resolve().parents[3] / "plugins"     # core/sitegate/scaffold -> the checkout


def _first_party_domains() -> set[str]:
    """Domains of the integrations in the repository's plugins/ (when sitegate runs from a checkout)."""
    if not _FIRST_PARTY.is_dir():
        return set()
    return {p.name for p in _FIRST_PARTY.iterdir() if (p / "manifest.json").is_file()}


_CLASS_SUFFIX = {"adapter": "Adapter", "processor": "Processor", "sink": "Sink", "update_handler": "UpdateHandler"}
