"""The mqttsn integration inside a real site: readings reach the pipeline, commands reach nodes."""

from __future__ import annotations

import socket

import pytest
import trio

from sitegate.errors import ConfigError
from sitegate.model import Command
from sitegate.structure import structure
from sitegate.testing import Recorder, running_site, wait_for

from plugins.mqttsn import codec as c
from plugins.mqttsn.config import GatewayConfig



async def gateway_port(host) -> int:
    """The UDP port the entry's gateway bound (the sites here ask for port 0: any free one)."""
    def bound():
        gw = host.entry("sensors").data.get("gateway")
        return gw is not None and gw.address is not None and gw.address[1]
    return await wait_for(bound, what="the gateway listening")


async def test_site_entry_publishes_readings_and_sends_commands(tmp_path, third_party, raw_client):
    site = """
    site: t
    entries:
      - id: sensors
        domain: mqttsn
        config:
          host: 127.0.0.1
          port: 0
          predefined: {1: "line3/press/temp"}
          topics:
            - {topic: "line3/+/temp", device: "{1}", point: temp}
    """
    async with running_site(tmp_path, site) as host:
        rec = Recorder(host)
        port = await gateway_port(host)
        node = third_party(port, "press")
        await node.do("send_connect")
        await node.do("send_publish_predefined", 1, b"71.5", 1)   # PUBACK after the pipeline took it
        readings = rec.readings("sensors.press")
        assert [(p, v) for _, p, v, _ in readings] == [("temp", 71.5)]
        press = host.devices.devices["sensors.press"]
        assert press.model == "MQTT-SN node" and [(p.name, p.datatype) for p in press.points] == [("temp", "float")]

        # A write command goes to the node's command topic; ack once the node has it (PUBACK).
        cl = await raw_client(port)
        await cl.connect("valve")
        await cl.send(c.Subscribe(1, "valve/cmd/open", qos=1))
        await cl.expect(c.Suback)
        result = []

        async def command():
            result.append(await host.command("sensors", Command("sensors.valve", "write", "open", 1, timeout=5)))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(command)
            pub = await cl.expect(c.Publish)
            assert pub.data == b"1"
            await cl.send(c.Puback(pub.topic_id, pub.msg_id))
        assert result[0].status == "ack", result[0]
        # A sleeping node: the command times out saying so, and the message stays buffered.
        await cl.send(c.Disconnect(600))
        await cl.expect(c.Disconnect)
        later = await host.command("sensors", Command("sensors.valve", "write", "open", 0, timeout=0.5))
        assert later.status == "timeout" and "stays buffered" in later.detail, later
        await cl.send(c.Pingreq("valve"))
        pub = await cl.expect(c.Publish)
        assert pub.data == b"0"
        missing = await host.command("sensors", Command("sensors.nobody", "write", "x", 1, timeout=1))
        assert missing.status == "nack" and "no client is subscribed" in missing.detail
        assert host.entry("sensors").integration.hook("entry_diagnostics")(entry=host.entry("sensors"))[
            "counters"]["publishes_in"] == 1
        # What Prometheus scrapes as sitegate_adapter_*: sessions by state and the gateway's counters.
        metrics = host.entry("sensors").integration.hook("entry_metrics")(entry=host.entry("sensors"))
        assert metrics["sessions"] >= 1 and metrics["sessions_active"] >= 1
        assert metrics["publishes_in_total"] == 1


def test_bad_config_is_refused_with_its_place():
    with pytest.raises(ConfigError) as err:
        structure({"port": 1884, "predefined": {0: "a/b"}, "topics": [{"topic": "a/#/b"}]}, GatewayConfig)
    text = str(err.value)
    assert "topic id 0 is outside 1..65534" in text or "'#' must be the last level" in text
    with pytest.raises(ConfigError) as err:
        structure({"topics": [{"topic": "a/b", "format": "xml"}]}, GatewayConfig)
    assert "format: expected one of number, text, json, struct, got 'xml'" in str(err.value)


async def test_port_in_use_makes_the_entry_retry_saying_why(tmp_path):
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    taken.bind(("127.0.0.1", 0))
    try:
        site = f"""
        site: t
        entries:
          - id: sensors
            domain: mqttsn
            config: {{host: 127.0.0.1, port: {taken.getsockname()[1]}}}
        """
        async with running_site(tmp_path, site) as host:
            ctx = host.entry("sensors")
            await wait_for(lambda: ctx.state.label == "setup_retry", what="setup_retry")
            assert "cannot listen on udp 127.0.0.1" in ctx.reason
    finally:
        taken.close()


async def test_qos1_puback_comes_after_the_reading_is_committed_to_the_wal(tmp_path, third_party):
    site = """
    site: t
    entries:
      - id: sensors
        domain: mqttsn
        config: {host: 127.0.0.1, port: 0, predefined: {1: "hall/temp"}}
      - id: hist
        domain: history
    routes:
      - {from: ["sensors.*/*"], to: [hist]}
    """
    async with running_site(tmp_path, site) as host:
        wal = host.services["dataplane"].wal
        node = third_party(await gateway_port(host), "press")
        await node.do("send_connect")
        for i in range(5):
            await node.do("send_publish_predefined", 1, str(20 + i).encode(), 1)   # returns on PUBACK
            # The WAL counts a reading once its group is committed (before waking the writer's waiters).
            assert wal.committed_readings == i + 1, f"PUBACK {i + 1} came with {wal.committed_readings} committed"
