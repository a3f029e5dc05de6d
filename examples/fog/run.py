"""The fog gateway in one command:

    python examples/fog/run.py              # Ctrl-C stops everything
    python examples/fog/run.py --seconds 20 # run for 20 s, print what reached the cloud, stop

Starts two Mosquitto brokers (the plant's and a stand-in for the cloud), then three sitegates
from the signed registry: edge-a and edge-b publish their readings to the plant broker, and the
fog site (fog.yaml) subscribes to them, runs plant-level rules across both edges, and forwards
every reading to the cloud with its original msgId. Needs Mosquitto (Debian: mosquitto).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "core"))

from sitegate.testing.mosquitto import Mosquitto, MqttObserver  # noqa: E402


def site_text(name: str, plant: Mosquitto, cloud: Mosquitto) -> str:
    text = (HERE / f"{name}.yaml").read_text()
    text = text.replace("port: 1883", f"port: {plant.port}").replace("port: 1884", f"port: {cloud.port}")
    # Every local endpoint on a free port, so the example runs beside anything else.
    head, _, _ = text.partition("\nobservability:")
    return head + "\nobservability: {port: 0}\napi: {port: 0}\n"


def summary(messages) -> dict:
    ids, edges = set(), set()
    for m in messages:
        doc = json.loads(m.payload)
        site = doc["msgId"][: -len(f"/{doc['deviceId']}/{doc['seqNo']}")]
        edges.add(site)
        ids.update(f"{site}/{doc['deviceId']}/{doc['seqNo'] + i}" for i in range(len(doc["points"])))
    return {"readings": len(ids), "from_sites": sorted(edges)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=0, help="stop after this long and print a summary")
    ap.add_argument("--registry", type=Path, default=REPO / "registry", help="the signed registry (make registry)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sitegate-fog-"))
    plant = Mosquitto(work / "plant-broker").start()
    cloud = Mosquitto(work / "cloud-broker").start()
    print(f"plant broker on 127.0.0.1:{plant.port}, cloud broker on 127.0.0.1:{cloud.port}; state in {work}",
          flush=True)
    procs: list[subprocess.Popen] = []
    try:
        with MqttObserver(cloud, "cloud/#") as at_cloud:
            for name in ("fog", "edge-a", "edge-b"):
                folder = work / name
                folder.mkdir()
                (folder / "site.yaml").write_text(site_text(name, plant, cloud))
                log = open(folder / "sitegate.log", "w")
                procs.append(subprocess.Popen(
                    [sys.executable, "-m", "sitegate.cli", "run", str(folder / "site.yaml"),
                     "--registry", str(args.registry)], cwd=folder, stdout=log, stderr=subprocess.STDOUT,
                    env=dict(os.environ, PYTHONUNBUFFERED="1")))
                print(f"started {name} (log: {folder / 'sitegate.log'})", flush=True)
            deadline = time.monotonic() + args.seconds if args.seconds else None
            try:
                while deadline is None or time.monotonic() < deadline:
                    time.sleep(min(5.0, max(0.1, (deadline or time.monotonic() + 5) - time.monotonic())))
                    s = summary(list(at_cloud.messages))
                    print(f"cloud has {s['readings']} readings from {', '.join(s['from_sites']) or 'nobody yet'}",
                          flush=True)
                    if any(p.poll() is not None for p in procs):
                        print("a sitegate stopped; see its log", flush=True)
                        return 1
            except KeyboardInterrupt:
                pass
            s = summary(list(at_cloud.messages))
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
        plant.stop()
        cloud.stop()
    ok = any(site.endswith("edge-a") for site in s["from_sites"]) and any(site.endswith("edge-b") for site in s["from_sites"])
    print(f"SUMMARY cloud received {s['readings']} readings with their edge msgIds from "
          f"{', '.join(s['from_sites'])}: {'OK' if ok else 'INCOMPLETE'}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
