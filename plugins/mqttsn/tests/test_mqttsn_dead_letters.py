"""A payload the gateway's rules cannot decode: a BAD_DECODE reading, a dead letter, and the flow goes on."""

from __future__ import annotations

import sqlite3

import trio

from sitegate.model import Quality
from sitegate.testing import Recorder, running_site, wait_for

from plugins.mqttsn import codec as c
from plugins.mqttsn.codec import TopicIdType
from test_mqttsn_entry import gateway_port


async def test_undecodable_payloads_are_dead_lettered_raw_and_acknowledged_after(tmp_path, raw_client):
    rule = '{topic: "hall/{device}/env", format: json, values: {temp: t}}'
    site = f"""
    site: t
    entries:
      - {{id: sensors, domain: mqttsn,
         config: {{host: 127.0.0.1, port: 0, predefined: {{1: "hall/press/env"}}, topics: [{rule}]}}}}
    """
    async with running_site(tmp_path, site) as host:
        rec = Recorder(host)
        port = await gateway_port(host)
        cl = await raw_client(port)
        await cl.connect("node1")
        for msg_id, data in ((1, b'{"t": 20.5}'), (2, b"{broken"), (3, b'{"t": 21}')):
            await cl.send(c.Publish(1, msg_id, data, qos=1, topic_id_type=TopicIdType.PREDEFINED))
            ack = await cl.expect(c.Puback)      # sent only once the readings and the dead letter are committed
            assert (ack.msg_id, ack.return_code) == (msg_id, c.ReturnCode.ACCEPTED)
        await wait_for(lambda: len(rec.readings("sensors.press")) == 3, what="3 readings")
        gw = host.entry("sensors").data["gateway"]
        assert gw.stats["bad_payloads"] == 1, gw.stats
        path = host.services["dataplane"].wal.path
        with sqlite3.connect(path) as db:
            rows = db.execute("SELECT kind, sink, source, device, error, body FROM dead_letters").fetchall()
    assert [v for _, _, v, _ in rec.readings("sensors.press")] == [20.5, None, 21]
    bad = [b for b in rec.batches if b.device == "sensors.press" and b.quality]
    assert bad and bad[0].quality == [int(Quality.BAD_DECODE)]
    [(kind, entry, topic, device, error, body)] = rows
    assert (kind, entry, topic, device, bytes(body)) == ("ingress", "sensors", "hall/press/env", "sensors.press",
                                                         b"{broken")
    assert "not JSON" in error and "node1" in error


async def test_dead_letters_decode_again_after_the_rule_is_fixed(tmp_path, raw_client):
    """The dead letter keeps the client id (the rule's device is `{client}`); after the rule is fixed
    `dlq replay` publishes the values at the time the gateway first received them, and the dead
    letter goes; one that still fails stays, with its new error."""
    from sitegate.cli import main
    from sitegate.config import load_site
    from sitegate.testing import write_site

    site = """
    site: t
    entries:
      - {id: sensors, domain: mqttsn, config: {host: 127.0.0.1, port: 0, topics: [RULE]}}
    """
    rule = '{topic: "env/+", format: json, values: {temp: KEY}}'
    async with running_site(tmp_path, site.replace("RULE", rule.replace("KEY", "t"))) as host:
        rec = Recorder(host)
        port = await gateway_port(host)
        cl = await raw_client(port)
        await cl.connect("node7")
        await cl.send(c.Register(0, 1, "env/a"))
        reg = await cl.expect(c.Regack)
        for msg_id, data in ((1, b'{"temp": 19.5}'), (2, b'{"temp": {"c": 20}}')):   # the firmware renamed t
            await cl.send(c.Publish(reg.topic_id, msg_id, data, qos=1))
            assert (await cl.expect(c.Puback)).return_code == c.ReturnCode.ACCEPTED
        await wait_for(lambda: len(rec.readings("sensors.node7")) == 2, what="2 BAD_DECODE readings")
        received = [t for _, _, _, t in rec.readings("sensors.node7")]
        path = host.services["dataplane"].wal.path
        with sqlite3.connect(path) as db:
            stored = db.execute("SELECT id, source, context, failed_at FROM dead_letters ORDER BY id").fetchall()
        assert [r[1:] for r in stored] == [("env/a", "node7", received[0]), ("env/a", "node7", received[1])]

        summary = await host.apply(load_site(write_site(tmp_path, site.replace("RULE", rule.replace("KEY", "temp")))))
        assert summary["reloaded"] == ["sensors"]
        await wait_for(lambda: host.entry("sensors").state.label == "loaded", what="the entry reloaded")
        assert await trio.to_thread.run_sync(main, ["dlq", "replay", "--db", str(path), "--all"]) == 1
        await wait_for(lambda: len(rec.readings("sensors.node7")) == 3, what="the replayed reading")
        with sqlite3.connect(path) as db:
            left = db.execute("SELECT id, error, attempts, note FROM dead_letters").fetchall()
    # The good one: its value, at the time it first arrived (the payload has none), from node7's device.
    assert rec.readings("sensors.node7")[2] == ("sensors.node7", "temp", 19.5, received[0])
    assert rec.batches[-1].quality is None
    [(dl_id, error, attempts, note)] = left
    assert dl_id == stored[1][0] and attempts == 1 and note == ""
    assert "got an object" in error and "(client 'node7')" in error
