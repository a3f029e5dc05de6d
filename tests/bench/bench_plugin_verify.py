"""plugin_verify_startup: start-up of 10 signed plugins with verification, against the same start without it.

Verified: TUF refresh from the local registry, each installed plugin's files
re-hashed against signed metadata, dependency order, then the 10 packages
imported (ten copies of the first-party simulator plugin). Baseline (same run):
the test-only unverified path reading the same installs, then the same imports.
Median of several starts. plugin_verify_only is the verification part alone.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from sitegate.registry import prepare_plugins
from sitegate.registry.artifact import build_artifact
from sitegate.registry.keys import NaclSigner
from sitegate.registry.repository import Repository
from sitegate.registry.store import PluginStore

PLUGINS = 10
RUNS = 7
TARGET_S = 1.0
REPO = Path(__file__).resolve().parents[2]
# Ten copies of a real first-party plugin (as bench_core does), so hashing and import are representative.
MODEL = REPO / "plugins" / "simulator"
_FALLBACK = "".join(f"def f{i}(x):\n    return x * {i} + {i}\n\n" for i in range(60))


def _write_plugin(src: Path, domain: str, deps: list[str]) -> None:
    if (MODEL / "manifest.json").is_file():
        shutil.copytree(MODEL, src, ignore=shutil.ignore_patterns("tests", "__pycache__"))
        manifest = json.loads((src / "manifest.json").read_text())
    else:
        src.mkdir(parents=True)
        (src / "__init__.py").write_text("from . import logic\n")
        (src / "logic.py").write_text(_FALLBACK)
        manifest = {"name": domain, "version": "1.0.0", "kinds": ["processor"], "requires": ">=1.0,<2"}
    manifest.update(domain=domain, dependencies=deps, requirements=["attrs>=20"])
    (src / "manifest.json").write_text(json.dumps(manifest))


def _setup(tmp: Path) -> tuple[Path, Path, dict[str, str]]:
    keys = {n: NaclSigner.generate(n) for n in ("root", "targets", "snapshot", "timestamp", "bench")}
    ring = {s.keyid: s for s in keys.values()}
    repo = Repository.init(tmp / "registry", root=[keys["root"]], root_threshold=1, targets=keys["targets"],
                           snapshot=keys["snapshot"], timestamp=keys["timestamp"])
    repo.add_publisher("bench", keys["bench"].public_key, ring)
    pins = {}
    for i in range(PLUGINS):
        domain = f"benchplugin{i}"
        src = tmp / "src" / domain
        _write_plugin(src, domain, [f"benchplugin{i - 1}"] if i else [])
        _, data = build_artifact(src)
        repo.publish(data, keys["bench"], ring)
        pins[domain] = ">=1.0,<2"
    state = tmp / "state"
    store = PluginStore(state, repo.path, actor="bench")
    for domain in pins:
        store.install(domain)
    return repo.path, state, pins


def _import_all(plugins, run: int) -> None:
    for domain, plugin in plugins.items():
        name = f"_bench_{domain}_{run}"
        spec = importlib.util.spec_from_file_location(name, plugin.path / "__init__.py",
                                                      submodule_search_locations=[str(plugin.path)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        for mod in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            del sys.modules[mod]


def _start(registry: Path, state: Path, pins: dict[str, str], run: int, verify: bool) -> tuple[float, float]:
    """(whole start-up, the plugin-preparation part alone) in seconds."""
    t0 = time.perf_counter()
    plugins = prepare_plugins(registry, state, pins, actor="bench", _skip_verification_for_tests=not verify)
    t1 = time.perf_counter()
    _import_all(plugins, run)
    return time.perf_counter() - t0, t1 - t0


def run() -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="bench-plugin-verify-") as tmp:
        registry, state, pins = _setup(Path(tmp))
        verified, baseline = [], []
        for run_no in range(RUNS):
            baseline.append(_start(registry, state, pins, 2 * run_no, verify=False))
            verified.append(_start(registry, state, pins, 2 * run_no + 1, verify=True))
    value = statistics.median(v for v, _ in verified)
    base = statistics.median(b for b, _ in baseline)
    prep = statistics.median(p for _, p in verified)
    prep_base = statistics.median(p for _, p in baseline)
    return [{
        "name": "plugin_verify_startup",
        "value": round(value, 4),
        "unit": "s",
        "baseline": round(base, 4),
        "ratio": round(value / base, 2) if base else None,
        "target": f"<= {TARGET_S} s",
        "passed": value <= TARGET_S,
    }, {
        # The verification work alone (refresh + re-hash + order), without the imports both pay.
        "name": "plugin_verify_only",
        "value": round(prep, 4),
        "unit": "s",
        "baseline": round(prep_base, 4),
        "ratio": round(prep / prep_base, 1) if prep_base else None,
        "target": f"<= {TARGET_S} s",
        "passed": prep <= TARGET_S,
    }]


if __name__ == "__main__":
    for fig in run():
        print(fig)
