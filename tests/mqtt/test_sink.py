"""The mqtt sink against a real Mosquitto: headers, topics, outages, TLS, credentials, birth and will."""

from __future__ import annotations

import json
import socket

import pytest
import trio

from sitegate.plugins import SinkError
from sitegate.testing.harness import running_site, wait_for
from sitegate.testing.mosquitto import MqttObserver

from tests.mqtt.helpers import deliver_with_retry, loaded, make_batches, mqtt_entry, payloads, site_with

pytestmark = pytest.mark.mosquitto


async def test_batch_mode_message_carries_header_and_readings(mosquitto, tmp_path):
    broker = mosquitto()
    with MqttObserver(broker, "plant/#") as obs:
        async with running_site(tmp_path, site_with(mqtt_entry("uplink", broker), site="plant")) as host:
            await loaded(host, "uplink")
            sink = host.sinks["uplink"]
            batches = make_batches("press.dev0", 3, per_batch=4)
            await sink.deliver(batches)
            msgs = await obs.wait_count(3, "plant/press.dev0")
    docs = payloads(msgs)
    assert [d["seqNo"] for d in docs] == [0, 4, 8]
    first = docs[0]
    assert first["msgId"] == "plant/press.dev0/0"
    assert first["deviceId"] == "press.dev0" and first["schemaVersion"] == 1
    assert first["points"] == ["p0", "p1", "p2", "p3"] and first["values"] == [0, 1, 2, 3]
    assert first["producedAt"] == max(first["ts"])


async def test_point_mode_uses_topic_template_over_mqtt_311(mosquitto, tmp_path):
    broker = mosquitto()
    extra = """
protocol: "3.1.1"
publish: {mode: point, topic: "{site}/{device}/{point}"}
"""
    with MqttObserver(broker, "plant-a/#") as obs:
        async with running_site(tmp_path, site_with(mqtt_entry("uplink", broker, extra=extra), site="plant-a")) as host:
            await loaded(host, "uplink")
            await host.sinks["uplink"].deliver(make_batches("line3", 1, per_batch=3, start_seq=10))
            msgs = await obs.wait_count(3, "plant-a/line3/+")
    assert sorted(m.topic for m in msgs) == ["plant-a/line3/p0", "plant-a/line3/p1", "plant-a/line3/p2"]
    docs = {m.topic: json.loads(m.payload) for m in msgs}
    assert docs["plant-a/line3/p2"]["msgId"] == "plant-a/line3/12"
    assert docs["plant-a/line3/p2"]["value"] == 12


async def test_broker_outage_mid_stream_loses_nothing_and_keeps_order(mosquitto, tmp_path):
    broker = mosquitto()
    devices = ["dev0", "dev1"]
    n_rounds, per = 40, 5
    with MqttObserver(broker, "s/#", session="observer-outage") as obs:
        async with running_site(tmp_path, site_with(mqtt_entry("uplink", broker), site="s")) as host:
            await loaded(host, "uplink")
            sink = host.sinks["uplink"]
            plan = {d: make_batches(d, n_rounds, per_batch=per) for d in devices}
            failures = 0

            async def outage():
                await broker.astop()
                # the broker stays away until the gateway has felt it a few times
                await wait_for(lambda: sink.counters["failures"] >= 5, 20, what="deliveries failing during the outage")
                await broker.astart()

            async with trio.open_nursery() as nursery:
                for r in range(n_rounds):
                    if r == 10:
                        nursery.start_soon(outage)
                    failures += await deliver_with_retry(sink, [plan[d][r] for d in devices])
            assert failures > 0, "the outage should have made deliveries fail (and be retried)"
            assert host.entry("uplink").state.label == "loaded", "a broker outage must not fail the entry"
            for d in devices:
                await obs.wait_for(lambda ms, d=d: {json.loads(m.payload)["seqNo"] for m in ms
                                                     if m.topic == f"s/{d}"} >= {i * per for i in range(n_rounds)},
                                   f"every batch of {d}", timeout=20)
    for d in devices:
        seen, ordered = set(), []
        for doc in payloads(obs.on(f"s/{d}")):
            if doc["msgId"] not in seen:          # dedup by msgId, as a consumer does
                seen.add(doc["msgId"])
                ordered.append(doc["seqNo"])
        assert ordered == [i * per for i in range(n_rounds)], f"{d}: out of order or missing: {ordered}"


async def test_deliver_while_broker_down_raises_sink_error_not_crash(mosquitto, tmp_path):
    broker = mosquitto()
    async with running_site(tmp_path, site_with(mqtt_entry("uplink", broker), site="s")) as host:
        await loaded(host, "uplink")
        await broker.astop()
        conn = host.entry("uplink").data["connection"]
        await wait_for(lambda: not conn.online, 5, what="connection noticed the outage")
        with pytest.raises(SinkError) as info:
            await host.sinks["uplink"].deliver(make_batches("d", 1))
        assert not info.value.permanent and "not connected" in str(info.value)
        await broker.astart()
        await deliver_with_retry(host.sinks["uplink"], make_batches("d", 1), deadline=10)


async def test_tls_with_ca_delivers(mosquitto, tmp_path):
    broker = mosquitto(tls=True)
    extra = f"tls: {{ca: {broker.certs.ca}}}"
    with MqttObserver(broker, "s/#") as obs:
        async with running_site(tmp_path, site_with(mqtt_entry("uplink", broker, tls=True, extra=extra), site="s")) as host:
            await loaded(host, "uplink")
            await host.sinks["uplink"].deliver(make_batches("d", 2))
            await obs.wait_count(2, "s/d")


async def test_tls_with_untrusted_ca_is_a_clear_setup_error(mosquitto, tmp_path):
    broker = mosquitto(tls=True)
    extra = f"tls: {{ca: {broker.certs.other_ca}}}"
    async with running_site(tmp_path, site_with(mqtt_entry("uplink", broker, tls=True, extra=extra), site="s")) as host:
        await wait_for(lambda: host.entry("uplink").state.label == "setup_error", 10, what="setup_error")
        assert "certificate verify failed" in host.entry("uplink").reason


async def test_mutual_tls_needs_the_client_certificate(mosquitto, tmp_path):
    broker = mosquitto(mutual_tls=True)
    c = broker.certs
    good = f"tls: {{ca: {c.ca}, cert: {c.client_cert}, key: {c.client_key}}}"
    bad = f"tls: {{ca: {c.ca}}}"
    with MqttObserver(broker, "s/#") as obs:
        text = site_with(mqtt_entry("good", broker, tls=True, extra=good), mqtt_entry("nocert", broker, tls=True, extra=bad),
                         site="s")
        async with running_site(tmp_path, text) as host:
            await loaded(host, "good")
            await host.sinks["good"].deliver(make_batches("d", 1))
            await obs.wait_count(1, "s/d")
            # Without a certificate the broker ends the handshake: the entry stays up, offline, saying why,
            # and deliveries fail (retryable) rather than crash.
            await loaded(host, "nocert")
            conn = host.entry("nocert").data["connection"]
            await wait_for(lambda: "certificate required" in conn.reason, 10, what=f"reason names the certificate ({conn.reason})")
            assert not conn.online
            with pytest.raises(SinkError):
                await host.sinks["nocert"].deliver(make_batches("d", 1))


async def test_username_and_password_from_secrets(mosquitto, tmp_path):
    broker = mosquitto(users={"gateway": "s3cret-pw"})
    good = "username: gateway\npassword: !secret mqtt_password"
    bad = "username: gateway\npassword: wrong"
    with pytest.raises(RuntimeError, match="could not subscribe"):
        with MqttObserver(broker, "#", timeout=0.5):   # anonymous: refused
            pass
    text = site_with(mqtt_entry("good", broker, extra=good), mqtt_entry("bad", broker, extra=bad), site="s")
    with MqttObserver(broker, "s/#", username="gateway", password="s3cret-pw") as obs:
        async with running_site(tmp_path, text, secrets={"mqtt_password": "s3cret-pw"}) as host:
            await loaded(host, "good")
            await host.sinks["good"].deliver(make_batches("d", 1))
            await obs.wait_count(1, "s/d")
            await wait_for(lambda: host.entry("bad").state.label == "setup_error", 10, what="bad password refused")
            reason = host.entry("bad").reason.lower()
            assert "not authorized" in reason or "bad user" in reason, reason


async def test_birth_and_last_will_status(mosquitto, tmp_path):
    broker = mosquitto()
    with MqttObserver(broker, "s/uplink/status") as obs:
        async with running_site(tmp_path, site_with(mqtt_entry("uplink", broker), site="s")) as host:
            await loaded(host, "uplink")
            await obs.wait_for(lambda ms: [m.payload for m in ms] == [b"online"], "birth")
            assert obs.messages[0].retain is False or obs.messages[0].payload == b"online"
            # Vanish without DISCONNECT (like a crash): the broker publishes the will...
            conn = host.entry("uplink").data["connection"]
            conn.client.socket().shutdown(socket.SHUT_RDWR)
            await obs.wait_for(lambda ms: b"offline" in [m.payload for m in ms], "last will")
            # ...and paho reconnects by itself, announcing itself again.
            await obs.wait_for(lambda ms: [m.payload for m in ms][-1:] == [b"online"] and len(ms) >= 3, "second birth")
        # A clean unload says goodbye itself (a clean disconnect suppresses the will).
        await obs.wait_for(lambda ms: [m.payload for m in ms][-1:] == [b"offline"] and len(ms) >= 4, "goodbye")


def _reading_seqs(messages, topic: str) -> list[int]:
    """Per-reading sequence numbers in arrival order, first copy only (dedup by msgId, as a consumer does)."""
    seen, out = set(), []
    for doc in payloads(m for m in messages if m.topic == topic):
        for i in range(len(doc["points"])):
            seq = doc["seqNo"] + i
            if seq not in seen:
                seen.add(seq)
                out.append(seq)
    return out


async def test_outage_through_the_data_plane_delivers_everything_in_order(mosquitto, tmp_path):
    broker = mosquitto()
    site = site_with(
        "  - {id: sim, domain: simulator, config: {devices: 2, interval: 10ms}}\n",
        mqtt_entry("uplink", broker), site="s") + """
routes:
  - {from: ["sim.*/*"], to: [uplink]}
storage: {normal_period: 50ms, retry_initial: 20ms, retry_max: 200ms}
"""
    devices = ["sim.dev0", "sim.dev1"]
    with MqttObserver(broker, "s/#", session="observer-dp") as obs:
        async with running_site(tmp_path, site) as host:
            plane = host.services["dataplane"]
            await obs.wait_count(10, "s/sim.dev1")
            await broker.astop()
            await wait_for(lambda: plane.deliveries["uplink"].state in ("degraded", "offline"), 10,
                           what="the sink noticing the outage")
            assert host.entry("uplink").state.label == "loaded"
            during = host.pipeline.readings_in
            await wait_for(lambda: host.pipeline.readings_in >= during + 100, 10, what="ingestion during the outage")
            await broker.astart()
            # Everything numbered up to now must arrive: nothing lost, whatever was pending at the outage.
            target = {d: host.pipeline.allocate(d, 0) for d in devices}
            for d in devices:
                await obs.wait_for(lambda ms, d=d: set(range(target[d])) <= set(_reading_seqs(ms, f"s/{d}")),
                                   f"every reading of {d} below seq {target[d]}", timeout=30)
            await wait_for(lambda: plane.deliveries["uplink"].state == "online", 10, what="sink online again")
    for d in devices:
        seqs = _reading_seqs(obs.messages, f"s/{d}")
        assert seqs == sorted(seqs), f"{d}: readings out of order after dedup"
        assert seqs[:target[d]] == list(range(target[d]))


async def test_long_point_mode_delivery_is_published_in_slices_and_fully_acknowledged(mosquitto, tmp_path):
    broker = mosquitto()
    extra = "publish: {mode: point}"
    with MqttObserver(broker, "s/#") as obs:
        async with running_site(tmp_path, site_with(mqtt_entry("uplink", broker, extra=extra), site="s")) as host:
            await loaded(host, "uplink")
            sink = host.sinks["uplink"]
            await sink.deliver(make_batches("d", 60, per_batch=10))       # 600 messages: three slices
            assert sink.counters["messages"] == 600 and sink.counters["readings"] == 600
            assert host.entry("uplink").data["connection"].describe()["in_flight"] == 0
            msgs = await obs.wait_count(600, "s/d/+")
    assert sorted(json.loads(m.payload)["seqNo"] for m in msgs) == list(range(600))


async def test_broker_refusing_a_topic_is_permanent_and_dead_letters_only_that(mosquitto, tmp_path):
    acl = tmp_path / "acl"
    acl.write_text("user gateway\ntopic readwrite s/ok.dev0\n")     # bad.dev0 may not publish
    broker = mosquitto(users={"gateway": "pw"}, options={"acl_file": acl})
    extra = 'username: gateway\npassword: pw\npublish: {topic: "s/{device}"}\nstatus: null'
    site = site_with(
        "  - {id: ok, domain: simulator, config: {devices: 1, interval: 20ms}}\n"
        "  - {id: bad, domain: simulator, config: {devices: 1, interval: 20ms}}\n",
        mqtt_entry("uplink", broker, extra=extra), site="s") + """
routes:
  - {from: ["ok.*/*", "bad.*/*"], to: [uplink]}
storage: {normal_period: 50ms, retry_initial: 20ms, retry_max: 200ms}
"""
    async with running_site(tmp_path, site) as host:
        d = host.services["dataplane"].deliveries["uplink"]
        await wait_for(lambda: d.dead_letters > 0 and d.delivered_readings > 0, 15,
                       what="the refused device dead-lettered while the other flows")
        events = [e for e in host.events.recent if e.kind == "sink.dead_letter"]
    assert events and all(e.device == "bad.dev0" for e in events)
    assert "0x87" in events[0].data["error"]


async def test_concurrent_deliveries_each_complete_on_their_own_pubacks(mosquitto, tmp_path):
    broker = mosquitto()
    with MqttObserver(broker, "s/#") as obs:
        async with running_site(tmp_path, site_with(mqtt_entry("uplink", broker), site="s")) as host:
            await loaded(host, "uplink")
            sink = host.sinks["uplink"]
            async with trio.open_nursery() as nursery:
                for d in ("a", "b", "c"):
                    nursery.start_soon(sink.deliver, make_batches(d, 300, per_batch=2))
            assert sink.counters["deliveries"] == 3 and sink.counters["messages"] == 900
            assert host.entry("uplink").data["connection"].describe()["in_flight"] == 0
            await obs.wait_count(900, "s/+")


async def test_concurrent_deliveries_publish_in_the_order_they_began(mosquitto, tmp_path):
    # How the data plane pipelines (deliveries_in_flight): each call begins before the next is
    # started; a call of 600 messages publishes in three slices with checkpoints between, yet the
    # slices of the calls must not interleave, or one device's readings would go out of order.
    broker = mosquitto()
    with MqttObserver(broker, "s/#") as obs:
        async with running_site(tmp_path, site_with(mqtt_entry("uplink", broker), site="s")) as host:
            await loaded(host, "uplink")
            sink = host.sinks["uplink"]
            assert sink.concurrent_deliveries > 1
            began: list[int] = []

            async def call(k: int, task_status=trio.TASK_STATUS_IGNORED) -> None:
                batches = make_batches("d", 600, per_batch=1, start_seq=600 * k)
                began.append(k)
                task_status.started()
                await sink.deliver(batches)

            async with trio.open_nursery() as nursery:
                for k in range(3):
                    await nursery.start(call, k)
            assert began == [0, 1, 2] and sink.counters["deliveries"] == 3
            msgs = await obs.wait_count(1800, "s/d")
    assert [json.loads(m.payload)["seqNo"] for m in msgs] == list(range(1800))


def test_queued_packets_are_joined_in_order_except_those_paho_acts_on_after_writing():
    import collections

    from plugins.mqtt.connection import _coalesce

    def packet(command: int, qos: int, data: bytes, pos: int = 0) -> dict:
        return {"command": command, "mid": 0, "qos": qos, "pos": pos, "to_process": len(data) - pos,
                "packet": bytearray(data), "info": None}

    out = collections.deque([packet(0x32, 1, b"..pub1", pos=2), packet(0x40, 0, b"ack"), packet(0x32, 1, b"pub2"),
                             packet(0x30, 0, b"qos0"), packet(0x32, 1, b"pub3"), packet(0xE0, 0, b"bye")])
    _coalesce(out)
    assert [(bytes(p["packet"][p["pos"]:]), p["to_process"]) for p in out] == [
        (b"pub1ackpub2", 11), (b"qos0", 4), (b"pub3", 4), (b"bye", 3)]
    assert out[0]["command"] == 0x32 and out[0]["qos"] == 1
    out.popleft()
    out.popleft()
    _coalesce(out)            # a plain packet before a DISCONNECT stays as it is
    assert [bytes(p["packet"]) for p in out] == [b"pub3", b"bye"]


async def test_stopping_a_connection_logs_no_error(mosquitto, caplog):
    # paho's thread may run its loop once more after the socket closed and log "Client is not
    # connected" at ERROR: an integrator reading the log of a clean shutdown would look for a fault.
    import logging

    from plugins.mqtt.config import MqttConfig
    from plugins.mqtt.connection import Connection

    broker = mosquitto()
    caplog.set_level(logging.DEBUG)
    for i in range(20):
        conn = Connection(MqttConfig(host=broker.host, port=broker.port, status=None), client_id=f"stop-{i}")
        await conn.start()
        assert await conn.wait_online(10), conn.reason
        await conn.stop()
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []
