"""Throwaway registries for the registry tests: fresh keys, tiny plugins that leave a marker when imported."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import attrs
import pytest

from sitegate.registry.artifact import build_artifact
from sitegate.registry.keys import NaclSigner
from sitegate.registry.repository import Repository
from sitegate.registry.store import PluginStore


@attrs.define
class Lab:
    """A registry with its keys, a site state folder, and a place where plugin markers land."""

    tmp: Path
    repo: Repository
    keys: dict[str, NaclSigner]
    markers: Path
    state: Path

    @property
    def ring(self) -> dict[str, NaclSigner]:
        return {s.keyid: s for s in self.keys.values()}

    @property
    def online(self) -> dict[str, NaclSigner]:
        """What a publish may use besides the publisher key: snapshot and timestamp keys only."""
        return {s.keyid: s for n, s in self.keys.items() if n in ("snapshot", "timestamp")}

    def add_publisher(self, name: str) -> NaclSigner:
        signer = NaclSigner.generate(name)
        self.keys[name] = signer
        self.repo.add_publisher(name, signer.public_key, self.ring)
        return signer

    def write_plugin(self, domain: str, version: str = "1.0.0", *, requires: str = ">=1.0,<2",
                     dependencies: list[str] | None = None, requirements: list[str] | None = None,
                     code: str = "", extra: dict | None = None) -> Path:
        src = self.tmp / "src" / f"{domain}-{version}" / domain
        src.mkdir(parents=True, exist_ok=True)
        marker = self.markers / f"{domain}-{version}"
        # Importing the plugin leaves a marker: the tamper tests prove no plugin code ran by its absence.
        (src / "__init__.py").write_text(
            f"from pathlib import Path\nPath({str(marker)!r}).write_text('imported')\n"
            f"VERSION = {version!r}\n{code}")
        (src / "helpers.py").write_text("def double(x):\n    return 2 * x\n")
        (src / "tests").mkdir(exist_ok=True)
        (src / "tests" / "test_it.py").write_text("def test_nothing():\n    pass\n")
        manifest = {"domain": domain, "name": domain.title(), "version": version, "kinds": ["processor"],
                    "requires": requires, "dependencies": dependencies or [], "requirements": requirements or [],
                    "codeowners": ["@lab"], "documentation": "https://example.invalid", "iot_class": "calculated"}
        manifest.update(extra or {})
        (src / "manifest.json").write_text(json.dumps(manifest, indent=2))
        return src

    def publish(self, domain: str, version: str = "1.0.0", *, publisher: str = "acme", **kw) -> bytes:
        _, data = build_artifact(self.write_plugin(domain, version, **kw))
        self.repo.publish(data, self.keys[publisher], self.online)
        return data

    def store(self, **kw) -> PluginStore:
        return PluginStore(self.state, self.repo.path, actor="test", **kw)

    def marker(self, domain: str, version: str = "1.0.0") -> Path:
        return self.markers / f"{domain}-{version}"

    def ran(self) -> list[str]:
        return sorted(p.name for p in self.markers.iterdir())


def _import_plugin(path: Path, domain: str):
    """Import an installed plugin folder the way the core's loader does (by path)."""
    name = f"_registry_test_{domain}_{abs(hash(str(path)))}"
    spec = importlib.util.spec_from_file_location(name, path / "__init__.py", submodule_search_locations=[str(path)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop(name, None)
    return module


@pytest.fixture
def lab(tmp_path: Path) -> Lab:
    keys = {n: NaclSigner.generate(n) for n in ("root", "targets", "snapshot", "timestamp")}
    repo = Repository.init(tmp_path / "registry", root=[keys["root"]], root_threshold=1, targets=keys["targets"],
                           snapshot=keys["snapshot"], timestamp=keys["timestamp"])
    markers = tmp_path / "markers"
    markers.mkdir()
    lab = Lab(tmp_path, repo, keys, markers, tmp_path / "state")
    lab.add_publisher("acme")
    return lab


@pytest.fixture
def import_plugin():
    """Import an installed plugin folder by path, as the core's loader does."""
    return _import_plugin
