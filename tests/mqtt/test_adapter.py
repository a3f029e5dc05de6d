"""The mqtt adapter against a real Mosquitto: payload mapping, persistent sessions, ack after commit, bad payloads."""

from __future__ import annotations

import json
import sqlite3
import struct

import pytest
import trio

from sitegate.testing.harness import Recorder, running_site, wait_for
from sitegate.testing.mosquitto import publish_messages
from tests.mqtt.helpers import loaded, mqtt_entry, site_with

pytestmark = pytest.mark.mosquitto

JSON_SUB = """
subscribe:
  - filter: "factory/+/+/data"
    topic: "factory/{zone}/{device}/data"
    device: "{zone}.{device}"
    format: json
    values: {temp: "m.temp", hum: "m.hum"}
    timestamp: ts
"""


async def _publish(broker, messages):
    await trio.to_thread.run_sync(lambda: publish_messages(broker, messages))


async def test_json_payload_mapped_with_names_from_topic_levels(mosquitto, tmp_path):
    broker = mosquitto()
    async with running_site(tmp_path, site_with(mqtt_entry("local", broker, extra=JSON_SUB))) as host:
        rec = Recorder(host)
        await loaded(host, "local")
        await _publish(broker, [("factory/hall1/press7/data", json.dumps({"m": {"temp": 21.5, "hum": 40}, "ts": 1700000000.5})),
                                ("factory/hall2/oven1/data", json.dumps({"m": {"temp": 180.0, "hum": 5}, "ts": 1700000001}))])
        await wait_for(lambda: len(rec.readings()) >= 4, 10, what="4 readings")
        assert host.devices.point("local.hall1.press7", "temp") is not None, "devices are declared with their points"
    assert sorted(rec.readings()) == [
        ("local.hall1.press7", "hum", 40, 1700000000.5), ("local.hall1.press7", "temp", 21.5, 1700000000.5),
        ("local.hall2.oven1", "hum", 5, 1700000001.0), ("local.hall2.oven1", "temp", 180.0, 1700000001.0)]


async def test_number_and_struct_payloads_over_mqtt_311(mosquitto, tmp_path):
    broker = mosquitto()
    extra = """
protocol: "3.1.1"
subscribe:
  - {filter: "sensors/+/+", topic: "sensors/{device}/{point}", format: number}
  - filter: "raw/+"
    device: "{1}"
    format: struct
    byte_order: little
    fields: [{name: temp, type: int16, scale: 0.1}, {name: state, type: uint8}]
"""
    async with running_site(tmp_path, site_with(mqtt_entry("local", broker, extra=extra))) as host:
        rec = Recorder(host)
        await loaded(host, "local")
        await _publish(broker, [("sensors/th1/temp", b"21.25"), ("sensors/th1/count", b"42"),
                                ("raw/node3", struct.pack("<hB", -125, 3))])
        await wait_for(lambda: len(rec.readings()) >= 4, 10, what="4 readings")
    got = {(d, p): v for d, p, v, _ in rec.readings()}
    assert got[("local.th1", "temp")] == 21.25 and got[("local.th1", "count")] == 42
    assert got[("local.node3", "temp")] == pytest.approx(-12.5) and got[("local.node3", "state")] == 3


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
async def test_messages_published_while_gateway_down_arrive_after_restart(mosquitto, tmp_path, protocol):
    broker = mosquitto()
    site = site_with(mqtt_entry("local", broker, extra=f'protocol: "{protocol}"\n' + JSON_SUB))
    async with running_site(tmp_path, site) as host:
        await loaded(host, "local")     # the broker now holds a persistent session for our client id
    msgs = [(f"factory/z/d{i % 3}/data", json.dumps({"m": {"temp": i, "hum": 0}, "ts": 1700000000 + i}))
            for i in range(60)]
    await _publish(broker, msgs)
    await broker.astop()                # the broker restarts too while we are away: its session survives
    async with running_site(tmp_path, site) as host:
        rec = Recorder(host)            # (the broker is still down, so nothing can slip past the recorder)
        await broker.astart()
        await wait_for(lambda: len([r for r in rec.readings() if r[1] == "temp"]) >= 60, 15,
                       what="the 60 messages queued while the gateway was down")
        ingest = host.entry("local").data["ingest"]
    temps = sorted(v for _, p, v, _ in rec.readings() if p == "temp")
    assert temps == list(range(60))
    assert ingest.counters["malformed"] == 0


class _StuckStage:
    """A pipeline stage that never commits: stands for a gateway dying between receipt and commit."""

    def __init__(self):
        self.entered = trio.Event()

    async def accept(self, batch) -> None:
        self.entered.set()
        await trio.sleep_forever()

    def saturated(self) -> bool:
        return False


async def test_message_acknowledged_only_after_commit(mosquitto, tmp_path):
    broker = mosquitto()
    site = site_with(mqtt_entry("local", broker, extra=JSON_SUB))
    async with running_site(tmp_path, site) as host:
        rec = Recorder(host)
        await loaded(host, "local")
        await _publish(broker, [("factory/z/d/data", json.dumps({"m": {"temp": 1, "hum": 0}, "ts": 1}))])
        await wait_for(lambda: rec.readings(), 10, what="the committed message")
        stuck = _StuckStage()
        host.pipeline.stage = stuck
        await _publish(broker, [("factory/z/d/data", json.dumps({"m": {"temp": 2, "hum": 0}, "ts": 2}))])
        with trio.fail_after(10):
            await stuck.entered.wait()
        # received, never committed: the gateway goes away now
    await broker.astop()
    async with running_site(tmp_path, site) as host:
        rec = Recorder(host)
        await broker.astart()
        await wait_for(lambda: [r for r in rec.readings() if r[1] == "temp"], 10, what="the redelivered message")
        # The broker resends a session's unacknowledged messages in order, so had the first (committed)
        # message not been acknowledged, it would have arrived before this one.
    assert [v for _, p, v, _ in rec.readings() if p == "temp"] == [2]


async def test_malformed_payloads_are_counted_reported_dead_lettered_and_the_flow_continues(mosquitto, tmp_path,
                                                                                          capsys):
    broker = mosquitto()
    async with running_site(tmp_path, site_with(mqtt_entry("local", broker, extra=JSON_SUB))) as host:
        rec = Recorder(host)
        await loaded(host, "local")
        good = lambda i: json.dumps({"m": {"temp": i, "hum": 1}, "ts": 1700000000 + i})  # noqa: E731
        await _publish(broker, [
            ("factory/z/d/data", good(1)),
            ("factory/z/d/data", b"{not json"),
            ("factory/z/d/data", json.dumps({"m": {"temp": [1, 2], "hum": 1}, "ts": 5})),
            ("factory/z/d/data", json.dumps({"m": {"hum": 1}, "ts": 5})),
            ("factory/z/d/data", good(2)),
        ])
        await wait_for(lambda: len([r for r in rec.readings() if r[1] == "temp"]) >= 2, 10, what="the good messages")
        ingest = host.entry("local").data["ingest"]
        await wait_for(lambda: ingest.counters["malformed"] == 3, 5, what="3 malformed counted")
        events = [e for e in host.events.recent if e.kind == "mqtt.malformed"]
        # The flow goes on after them: a later good message still arrives.
        await _publish(broker, [("factory/z/e/data", b"\xff\x00 binary"), ("factory/z/d/data", good(3))])
        await wait_for(lambda: len([r for r in rec.readings() if r[1] == "temp"]) >= 3, 10, what="the third good one")
        await wait_for(lambda: ingest.counters["malformed"] == 4, 5, what="4 malformed counted")
        wal = host.services["dataplane"].wal.path
    assert [v for _, p, v, _ in rec.readings() if p == "temp"] == [1, 2, 3]
    assert len(events) == 3
    assert "not JSON" in events[0].message and events[0].data["topic"] == "factory/z/d/data"
    assert "payload" not in events[0].data and events[0].data["size"] > 0, "viewers see events: no payload in them"
    assert "expected a number" in events[1].message
    assert "no 'temp'" in events[2].message
    # Each malformed payload is in the dead-letter table, raw, with its topic, entry and error.
    with sqlite3.connect(wal) as db:
        rows = db.execute("SELECT kind, sink, source, body, error FROM dead_letters ORDER BY id").fetchall()
    assert [(k, e, t, bytes(b)) for k, e, t, b, _ in rows] == [
        ("ingress", "local", "factory/z/d/data", b"{not json"),
        ("ingress", "local", "factory/z/d/data", json.dumps({"m": {"temp": [1, 2], "hum": 1}, "ts": 5}).encode()),
        ("ingress", "local", "factory/z/d/data", json.dumps({"m": {"hum": 1}, "ts": 5}).encode()),
        ("ingress", "local", "factory/z/e/data", b"\xff\x00 binary")]
    assert "not JSON" in rows[0][4] and "expected a number" in rows[1][4] and "no 'temp'" in rows[2][4]
    # ... and `sitegate dlq list` shows them as ingress dead letters.
    from sitegate.cli import main
    capsys.readouterr()
    assert main(["dlq", "list", "--db", str(wal)]) == 0
    out = capsys.readouterr().out
    assert out.count(" ingress ") == 4 and "factory/z/e/data" in out and "4 dead letter(s): 0 sink, 4 ingress" in out
    assert main(["dlq", "list", "--db", str(wal), "--json", "--kind", "ingress"]) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(d["kind"], d["entry"], d["source"]) for d in listed] == [("ingress", "local", "factory/z/d/data")] * 3 + \
        [("ingress", "local", "factory/z/e/data")]


async def test_other_sitegates_batches_keep_device_seq_and_repeats_are_dropped(mosquitto, tmp_path):
    from plugins.mqtt import envelope
    from sitegate.model import Batch

    broker = mosquitto()
    extra = 'subscribe: [{filter: "edges/#", format: sitegate}]'
    b0 = Batch("press.dev0", ["t", "p"], [1.0, 2.0], [100.0, 100.0], None, "sim", 10)
    b1 = Batch("press.dev0", ["t", "p", "t", "p"], [1.0, 2.0, 3.0, 4.0], [100.0, 100.0, 101.0, 101.0], None, "sim", 10)
    async with running_site(tmp_path, site_with(mqtt_entry("edges", broker, extra=extra), site="fog")) as host:
        rec = Recorder(host)
        await loaded(host, "edges")
        # the first batch, the same again (a redelivery), then one overlapping it (re-batched on a retry)
        await _publish(broker, [("edges/a/press.dev0", envelope.encode_batch("plant/edge-a", b)) for b in (b0, b0, b1)])
        ingest = host.entry("edges").data["ingest"]
        await wait_for(lambda: ingest.counters["messages"] == 3, 10, what="the three messages")
    rows = [(b.device, b.seq, list(b.values), list(b.timestamps)) for b in rec.batches]
    assert rows == [("press.dev0", 10, [1.0, 2.0], [100.0, 100.0]), ("press.dev0", 12, [3.0, 4.0], [101.0, 101.0])]
    assert ingest.counters["duplicates"] == 4


def _publish_with_properties(broker, messages) -> None:
    """Publish (topic, payload, user properties or None) at QoS 1 over MQTT 5 and wait for each PUBACK."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        for topic, payload, user in messages:
            props = None
            if user:
                props = Properties(PacketTypes.PUBLISH)
                props.UserProperty = user
                props.ContentType = "application/json"
            client.publish(topic, payload, 1, properties=props).wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()


async def test_messages_with_and_without_v5_properties_arrive_in_order(mosquitto, tmp_path):
    # Plain messages take the adapter's own PUBLISH parser, messages with properties paho's: one stream.
    broker = mosquitto()
    async with running_site(tmp_path, site_with(mqtt_entry("local", broker, extra=JSON_SUB))) as host:
        rec = Recorder(host)
        await loaded(host, "local")
        msgs = [(f"factory/z/d/data", json.dumps({"m": {"temp": i, "hum": 0}, "ts": 1700000000 + i}),
                 [("line", "3"), ("shift", "b")] if i % 3 == 1 else None) for i in range(12)]
        await trio.to_thread.run_sync(lambda: _publish_with_properties(broker, msgs))
        await wait_for(lambda: len([r for r in rec.readings() if r[1] == "temp"]) >= 12, 10, what="12 readings")
        ingest = host.entry("local").data["ingest"]
        assert ingest.counters["malformed"] == 0 and ingest.counters["messages"] == 12
    assert [v for _, p, v, _ in rec.readings() if p == "temp"] == list(range(12))


async def test_a_burst_over_mutual_tls_arrives_whole_and_in_order(mosquitto, tmp_path):
    # Over TLS the socket yields one record (<= 16 KiB) per read and keeps the rest in its own
    # buffer: every message of a burst much larger than that must still arrive, in order.
    broker = mosquitto(mutual_tls=True)
    c = broker.certs
    extra = f"tls: {{ca: {c.ca}, cert: {c.client_cert}, key: {c.client_key}}}\n" + JSON_SUB
    async with running_site(tmp_path, site_with(mqtt_entry("local", broker, tls=True, extra=extra))) as host:
        rec = Recorder(host)
        await loaded(host, "local")
        pad = "x" * 300
        msgs = [("factory/z/d/data", json.dumps({"m": {"temp": i, "hum": 0}, "ts": 1700000000 + i, "pad": pad}))
                for i in range(2000)]
        await _publish(broker, msgs)
        await wait_for(lambda: host.entry("local").data["ingest"].counters["messages"] >= 2000, 30,
                       what="2000 messages acknowledged")
    assert [v for _, p, v, _ in rec.readings() if p == "temp"] == list(range(2000))
