"""OPC UA figures: notifications/s through sitegate vs a pure-asyncua subscriber, and RSS with 10,000 items.

Both sides subscribe to the same server process (plugins/opcua/tests/server.py)
with the same items and publishing interval, one after the other in the same
run, for the same time.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from plugins.opcua.tests.conftest import OpcuaServer, free_port  # noqa: E402

ITEMS = 2000
PERIOD = 0.1
SECONDS = 8.0


def _site(folder: Path, endpoint: str, items: int) -> Path:
    points = "\n".join(f'      - {{name: i{i}, node: "ns=2;s=Bulk.Item{i}", sampling_interval: 0}}' for i in range(items))
    path = folder / "site.yaml"
    path.write_text(f"""site: bench
runtime: {{state_dir: {folder / 'state'}}}
api: {{enabled: false}}
observability: {{metrics: false}}
entries:
  - id: plc
    domain: opcua
    config:
      endpoint: {endpoint}
      publishing_interval: 100ms
      timeout: 30s
      liveness: 30s
      points:
{points}
""")
    return path


def sitegate_rate(endpoint: str, items: int, seconds: float) -> float:
    from sitegate.config import load_site
    from sitegate.host import SiteHost
    from sitegate.loader import DevFolderSource

    async def main() -> float:
        with tempfile.TemporaryDirectory() as tmp:
            host = SiteHost(load_site(_site(Path(tmp), endpoint, items)), DevFolderSource(REPO / "plugins", warn=False))
            async with trio.open_nursery() as n:
                await n.start(host.run)
                with trio.fail_after(120):
                    while host.entry("plc").state.label != "loaded":
                        await trio.sleep(0.1)
                await trio.sleep(2)
                start, t0 = host.pipeline.readings_in, time.perf_counter()
                await trio.sleep(seconds)
                rate = (host.pipeline.readings_in - start) / (time.perf_counter() - t0)
                await host.shutdown()
            return rate

    return trio.run(main)


def asyncua_rate(endpoint: str, items: int, seconds: float) -> float:
    from asyncua import Client, ua

    class Count:
        n = 0

        def datachange_notification(self, node, val, data):
            Count.n += 1

    async def main() -> float:
        async with Client(endpoint, timeout=30) as client:
            sub = await client.create_subscription(100, Count(), queue_maxsize=100_000)
            nodes = [client.get_node(f"ns=2;s=Bulk.Item{i}") for i in range(items)]
            for i in range(0, items, 1000):
                await sub._subscribe(nodes[i:i + 1000], ua.AttributeIds.Value, None, 1, sampling_interval=0)
            await asyncio.sleep(2)
            start, t0 = Count.n, time.perf_counter()
            await asyncio.sleep(seconds)
            return (Count.n - start) / (time.perf_counter() - t0)

    return asyncio.run(main())


MEMORY_CHILD = r"""
import sys, json, time, trio, tempfile, psutil, os
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from tests.bench.bench_opcua import _site
from sitegate.config import load_site
from sitegate.host import SiteHost
from sitegate.loader import DevFolderSource
async def main():
    with tempfile.TemporaryDirectory() as tmp:
        host = SiteHost(load_site(_site(Path(tmp), sys.argv[2], int(sys.argv[3]))),
                        DevFolderSource(Path(sys.argv[1]) / "plugins", warn=False))
        async with trio.open_nursery() as n:
            await n.start(host.run)
            with trio.move_on_after(240):
                while host.entry("plc").state.label != "loaded":
                    await trio.sleep(0.1)
            ok = host.entry("plc").state.label == "loaded"
            await trio.sleep(10)
            rss = psutil.Process(os.getpid()).memory_info().rss
            print(json.dumps({"rss": rss, "loaded": ok, "readings": host.pipeline.readings_in}), flush=True)
            await host.shutdown()
trio.run(main)
"""


def memory_rss(endpoint: str, items: int) -> dict:
    out = subprocess.run([sys.executable, "-c", MEMORY_CHILD, str(REPO), endpoint, str(items)],
                         capture_output=True, text=True, timeout=600)
    lines = [l for l in out.stdout.splitlines() if l.startswith("{")]
    if not lines:
        raise RuntimeError("memory child failed:\n" + out.stderr[-2000:])
    return json.loads(lines[-1])


def run() -> list[dict]:
    figures = []
    server = OpcuaServer(free_port(), "--items", str(ITEMS), "--period", str(PERIOD)).start(timeout=120)
    try:
        base = asyncua_rate(server.endpoint, ITEMS, SECONDS)
        ours = sitegate_rate(server.endpoint, ITEMS, SECONDS)
    finally:
        server.stop()
    ratio = ours / base if base else 0.0
    figures.append({"name": "opcua_notifications", "value": round(ours), "unit": "notifications/s",
                    "baseline": round(base), "ratio": round(ratio, 3), "target": "ratio>=0.8", "passed": ratio >= 0.8})
    big = OpcuaServer(free_port(), "--items", "10000", "--period", "2").start(timeout=300)
    try:
        mem = memory_rss(big.endpoint, 10000)
    finally:
        big.stop()
    mb = mem["rss"] / 1e6
    figures.append({"name": "opcua_memory", "value": round(mb, 1), "unit": "MB", "baseline": None, "ratio": None,
                    "target": "<=150MB_with_10000_items", "passed": mb <= 150 and mem["loaded"] and mem["readings"] > 0})
    return figures


if __name__ == "__main__":
    for f in run():
        print(f)
