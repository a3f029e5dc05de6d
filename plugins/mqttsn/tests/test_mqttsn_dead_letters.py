"""A payload the gateway's rules cannot decode: a BAD_DECODE reading, a dead letter, and the flow goes on."""

from __future__ import annotations

import sqlite3

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
