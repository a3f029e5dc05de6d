"""The core's own figures: site start-up with 10 plugins, and readings/s into an empty pipeline.

Baselines are measured in the same run: for start-up, importing the same
10 plugin packages by hand (the floor any loader pays); for throughput, the
simulator's own work (signals and batches for 100 devices x 2 points) with no
core, so the ratio is the share of the adapter's speed left after hand-over.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import trio

REPO = Path(__file__).resolve().parents[2]
SIM = REPO / "plugins" / "simulator"


def _ten_plugins(folder: Path) -> list[str]:
    domains = []
    for i in range(10):
        domain = f"sim{i}"
        dest = folder / domain
        shutil.copytree(SIM, dest, ignore=shutil.ignore_patterns("tests", "__pycache__"))
        manifest = json.loads((dest / "manifest.json").read_text())
        manifest["domain"] = domain
        (dest / "manifest.json").write_text(json.dumps(manifest))
        domains.append(domain)
    return domains


def _site(folder: Path, domains: list[str], interval: str, devices: int = 1) -> Path:
    lines = ["site: bench", "runtime:", f"  state_dir: {folder / 'state'}", "entries:"]
    for d in domains:
        lines.append(f"  - {{id: {d}, domain: {d}, config: {{interval: {interval}, devices: {devices}}}}}")
    path = folder / "site.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def bench_startup() -> dict:
    from sitegate.config import load_site
    from sitegate.host import SiteHost
    from sitegate.loader import DevFolderSource

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        domains = _ten_plugins(tmp / "plugins")
        site = _site(tmp, domains, "1s")

        def baseline_once(k: int) -> float:
            t0 = time.perf_counter()
            for d in domains:
                name = f"bench_baseline_{k}_{d}"
                spec = importlib.util.spec_from_file_location(
                    name, tmp / "plugins" / d / "__init__.py", submodule_search_locations=[str(tmp / "plugins" / d)])
                mod = importlib.util.module_from_spec(spec)
                sys.modules[name] = mod
                spec.loader.exec_module(mod)
            return time.perf_counter() - t0

        async def start_once() -> float:
            t0 = time.perf_counter()
            host = SiteHost(load_site(site), DevFolderSource(tmp / "plugins", warn=False))
            async with trio.open_nursery() as n:
                await n.start(host.run)
                elapsed = time.perf_counter() - t0
                await host.shutdown()
            return elapsed

        runs = [trio.run(start_once) for _ in range(5)]
        base = [baseline_once(k) for k in range(5)]
    value, baseline = min(runs), min(base)
    return {"name": "startup_10_plugins", "value": round(value * 1000, 2), "unit": "ms",
            "baseline": round(baseline * 1000, 2), "ratio": round(value / baseline, 2),
            "target": "value<=1000ms", "passed": value <= 1.0}


def bench_empty_pipeline(seconds: float = 4.0) -> dict:
    from sitegate.config import load_site
    from sitegate.host import SiteHost
    from sitegate.loader import DevFolderSource

    sys.path.insert(0, str(REPO))
    from plugins.simulator.signals import Signal, evaluator

    devices, points = 100, 2   # the simulator's default points: a sine and a counter

    from sitegate.model import Batch

    def baseline() -> float:
        # The adapter's own work with no core at all: evaluate the signals and build the
        # same batches, then drop them. The ratio is what the core's hand-over costs on top.
        names = ["temperature", "counter"]
        devs = [f"simulator.dev{i}" for i in range(devices)]
        fns = [(d, [evaluator(Signal("temperature"), 0, d), evaluator(Signal("counter", shape="counter"), 1, d)])
               for d in devs]
        n = 0
        t_end = time.perf_counter() + seconds
        while time.perf_counter() < t_end:
            now = time.time()
            stamps = [now] * len(names)
            batches = [Batch(d, names, [f(now) for f in dfns], stamps, None, "simulator") for d, dfns in fns]
            n += sum(len(b) for b in batches)
        return n / seconds

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        site = _site(tmp, ["simulator"], "0.0001", devices=devices)

        async def measure() -> float:
            host = SiteHost(load_site(site), DevFolderSource(REPO / "plugins", warn=False))
            async with trio.open_nursery() as n:
                await n.start(host.run)
                await trio.sleep(0.5)
                start_n, t0 = host.pipeline.readings_in, time.perf_counter()
                await trio.sleep(seconds)
                rate = (host.pipeline.readings_in - start_n) / (time.perf_counter() - t0)
                await host.shutdown()
            return rate

        rate = trio.run(measure)
    base = baseline()
    ratio = rate / base
    return {"name": "empty_pipeline", "value": round(rate), "unit": "readings/s", "baseline": round(base),
            "ratio": round(ratio, 3), "target": "ratio>=0.5", "passed": ratio >= 0.5}


def run() -> list[dict]:
    return [bench_startup(), bench_empty_pipeline()]


if __name__ == "__main__":
    for fig in run():
        print(fig)
