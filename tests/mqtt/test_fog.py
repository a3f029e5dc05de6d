"""examples/fog: two edge sites uplink through a broker to a fog site, which forwards to the cloud.

The readings reaching the cloud keep the edge's msgId, device, values and timestamps.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sitegate.testing.harness import running_site, wait_for
from sitegate.testing.mosquitto import MqttObserver

pytestmark = pytest.mark.mosquitto

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fog"
FAST = "\nstorage: {normal_period: 100ms, retry_initial: 20ms, retry_max: 200ms}\n"


def _site(name: str, plant, cloud) -> str:
    text = (EXAMPLE / f"{name}.yaml").read_text()
    text = text.replace("port: 1883", f"port: {plant.port}").replace("port: 1884", f"port: {cloud.port}")
    text = text.replace("interval: 500ms", "interval: 50ms")
    return text.split("\nobservability:")[0] + FAST + "observability: {metrics: false}\n"


def _readings(messages) -> dict[str, tuple]:
    """msgId of every reading -> (device, point, value, ts), from batched sitegate messages."""
    out = {}
    for m in messages:
        doc = json.loads(m.payload)
        ts = doc["ts"] if isinstance(doc["ts"], list) else [doc["ts"]] * len(doc["points"])
        site = doc["msgId"][: -len(f"/{doc['deviceId']}/{doc['seqNo']}")]
        for i, point in enumerate(doc["points"]):
            out[f"{site}/{doc['deviceId']}/{doc['seqNo'] + i}"] = (doc["deviceId"], point, doc["values"][i], ts[i])
    return out


async def test_fog_example_delivers_edge_readings_with_their_original_ids(mosquitto, tmp_path):
    plant, cloud = mosquitto(), mosquitto()
    folders = {n: tmp_path / n for n in ("edge-a", "edge-b", "fog")}
    for f in folders.values():
        f.mkdir()
    with MqttObserver(plant, "edges/#") as at_plant, MqttObserver(cloud, "cloud/#") as at_cloud:
        async with running_site(folders["fog"], _site("fog", plant, cloud)) as fog, \
                running_site(folders["edge-a"], _site("edge-a", plant, cloud)), \
                running_site(folders["edge-b"], _site("edge-b", plant, cloud)):
            await at_plant.wait_count(20, "edges/plant-a/edge-b/#", timeout=20)
            await at_plant.wait_count(20, "edges/plant-a/edge-a/#", timeout=20)
            sent = _readings(at_plant.messages)
            await wait_for(lambda: set(sent) <= set(_readings(at_cloud.messages)), 20,
                           what="every edge reading seen so far at the cloud")
            ingest = fog.entry("edges").data["ingest"]
            assert ingest.counters["malformed"] == 0
    got = _readings(at_cloud.messages)
    for msg_id, reading in sent.items():
        assert got[msg_id] == reading, f"{msg_id}: edge sent {reading}, cloud got {got[msg_id]}"
    devices = {r[0] for r in got.values()}
    assert {"press-a.dev0", "press-a.dev1", "oven-b.dev0", "oven-b.dev1"} <= devices
    assert any(k.startswith("plant-a/edge-a/") for k in got) and any(k.startswith("plant-a/edge-b/") for k in got)
    assert not any(k.startswith("plant-a/fog/") for k in got), "the fog must not renumber edge readings"
