"""The gateway against a client nobody here wrote (`mqtt-sn-12` from PyPI), plus the raw
codec client for the parts that client does not implement (each such test says why)."""

from __future__ import annotations

import pytest
import trio
from mqttsn12.client.MqttSnClientException import MqttSnClientException
from mqttsn12.packets import PingReqPacket

from plugins.mqttsn import codec as c
from plugins.mqttsn.codec import ReturnCode, TopicIdType
from plugins.mqttsn.payload import StructField, TopicRule

from mqttsn_helpers import Listener, until


async def test_connect_register_and_publish_at_every_qos(harness, third_party):
    gw, rec = await harness.gateway(predefined={7: "plant/boiler/temp"})
    port = gw.address[1]
    node = third_party(port, "node1")
    await node.do("send_connect")
    await node.do("send_publish", "plant/hall/temp", b"21.5", 0)      # REGISTER, then QoS 0
    await node.do("send_publish", "plant/hall/hum", b"40", 1)         # PUBACK
    await node.do("send_publish", "plant/hall/co2", b"612", 2)        # PUBREC/PUBREL/PUBCOMP
    await node.do("send_publish", "hz", b"50.0", 1)                   # short topic name
    await node.do("send_publish_predefined", 7, b"88.25", 1)          # predefined topic id
    # QoS -1: no connection at all, predefined topic id.
    anon = third_party(port, None)
    await anon.do("send_publish_predefined", 7, b"90", -1)
    await until(lambda: len(rec.rows()) == 6)
    rows = rec.rows()
    assert ("node1", "plant/hall/temp", 21.5) in rows
    assert ("node1", "plant/hall/hum", 40) in rows
    assert ("node1", "plant/hall/co2", 612) in rows
    assert ("node1", "hz", 50.0) in rows
    assert ("node1", "plant/boiler/temp", 88.25) in rows
    assert [r for r in rows if r[2] == 90][0][1] == "plant/boiler/temp"
    assert gw.stats["qos_minus1_in"] == 1
    await node.do("send_disconnect")
    assert "node1" not in gw.sessions


async def test_payload_rules_map_json_and_struct_to_named_points(harness, third_party):
    import struct

    gw, rec = await harness.gateway(topics=[
        TopicRule("site/+/env", format="json", device="{1}", values={"temp": "t", "hum": "h.0"}),
        TopicRule("site/+/bin", format="struct", device="{1}", byte_order="big",
                  fields=[StructField("temp", "int16", scale=0.1), StructField("volt", "uint16", scale=0.001)]),
    ])
    node = third_party(gw.address[1], "n7")
    await node.do("send_connect")
    await node.do("send_publish", "site/n7/env", b'{"t": 22.5, "h": [51]}', 1)
    await node.do("send_publish", "site/n7/bin", struct.pack(">hH", 215, 3300), 1)
    await until(lambda: len(rec.rows()) == 4)
    assert rec.rows() == [("n7", "temp", 22.5), ("n7", "hum", 51),
                          ("n7", "temp", pytest.approx(21.5)), ("n7", "volt", pytest.approx(3.3))]


async def test_qos1_is_acknowledged_only_after_delivery_returns(harness, raw_client):
    release = trio.Event()
    called = trio.Event()

    async def slow_deliver(batches):
        called.set()
        await release.wait()
        return True

    gw, _ = await harness.gateway(deliver=slow_deliver, predefined={1: "a/b"})
    cl = await raw_client(gw.address[1])
    await cl.connect("slow")
    await cl.send(c.Publish(1, 42, b"1", qos=1, topic_id_type=TopicIdType.PREDEFINED))
    with trio.fail_after(5):
        await called.wait()
    assert cl.nothing_waiting(), "PUBACK went out before the pipeline had the reading"
    release.set()
    ack = await cl.expect(c.Puback)
    assert (ack.msg_id, ack.return_code) == (42, ReturnCode.ACCEPTED)


async def test_saturated_pipeline_answers_congestion(harness, third_party):
    gw, rec = await harness.gateway()
    rec.accept = False
    node = third_party(gw.address[1], "busy")
    await node.do("send_connect")
    with pytest.raises(MqttSnClientException, match="congestion"):
        await node.do("send_publish", "x/y", b"1", 1)
    assert gw.stats["congestion"] == 1
    rec.accept = True
    await node.do("send_publish", "x/y", b"2", 1)   # accepted again once the pipeline has room
    assert rec.rows() == [("busy", "x/y", 2)]


async def test_qos2_duplicates_are_delivered_once(harness, raw_client):
    """mqtt-sn-12 never retransmits, so the duplicate PUBLISH is sent with the codec."""
    gw, rec = await harness.gateway(predefined={3: "q/two"})
    cl = await raw_client(gw.address[1])
    await cl.connect("dup")
    pub = c.Publish(3, 9, b"5", qos=2, topic_id_type=TopicIdType.PREDEFINED)
    await cl.send(pub)
    assert (await cl.expect(c.Pubrec)).msg_id == 9
    await cl.send(c.Publish(3, 9, b"5", qos=2, topic_id_type=TopicIdType.PREDEFINED, dup=True))
    assert (await cl.expect(c.Pubrec)).msg_id == 9
    await cl.send(c.Pubrel(9))
    assert (await cl.expect(c.Pubcomp)).msg_id == 9
    await cl.send(c.Pubrel(9))                      # a repeated PUBREL is completed again
    assert (await cl.expect(c.Pubcomp)).msg_id == 9
    assert rec.rows() == [("dup", "q/two", 5)]
    assert gw.stats["duplicates"] == 1


async def test_unknown_topic_id_is_rejected(harness, raw_client):
    gw, rec = await harness.gateway()
    cl = await raw_client(gw.address[1])
    await cl.connect("lost-topic")
    await cl.send(c.Publish(99, 1, b"1", qos=1))
    ack = await cl.expect(c.Puback)
    assert ack.return_code == ReturnCode.INVALID_TOPIC_ID


async def test_subscribe_with_wildcard_registers_before_publishing(harness, third_party):
    """mqtt-sn-12 never acknowledges a QoS 1 PUBLISH it receives (it compares the QoS number
    with the flag bit value 0x20), so it subscribes at QoS 0 here; QoS 1/2 towards clients
    are pinned with the codec client below."""
    gw, _ = await harness.gateway(predefined={20: "cmd/all"})
    node = third_party(gw.address[1], "act1")
    await node.do("send_connect")
    wild, exact, pre = Listener(), Listener(), Listener()
    await node.do("send_subscribe", "act1/cmd/#", 0, wild)
    await node.do("send_subscribe", "act1/state", 0, exact)
    await node.do("send_subscribe_predefined", 20, 0, pre)
    assert gw.send_to_topic("act1/cmd/led", b"on", qos=1) == 1
    assert gw.send_to_topic("act1/state", b"run", qos=0) == 1
    assert gw.send_to_topic("cmd/all", b"reboot", qos=1) == 1
    await node.poll_until(wild, 1)
    await node.poll_until(exact, 1)
    await node.poll_until(pre, 1)
    assert (wild.messages[0].topic_name, wild.messages[0].payload) == ("act1/cmd/led", b"on")
    assert exact.messages[0].payload == b"run"
    assert pre.messages[0].payload == b"reboot"
    assert gw.sessions["act1"].inflight is None and not gw.sessions["act1"].outq
    await node.do("send_unsubscribe", "act1/cmd/#")
    assert gw.send_to_topic("act1/cmd/led", b"off", qos=1) == 0


async def test_qos2_to_a_client_runs_the_full_flow(harness, raw_client):
    """mqtt-sn-12 does not answer a QoS 2 PUBLISH from the gateway, so the codec client does."""
    gw, _ = await harness.gateway()
    cl = await raw_client(gw.address[1])
    await cl.connect("q2")
    await cl.send(c.Subscribe(1, "q2/cmd", qos=2))
    sub = await cl.expect(c.Suback)
    gw.send_to_topic("q2/cmd", b"go", qos=2)
    pub = await cl.expect(c.Publish)
    assert (pub.qos, pub.topic_id, pub.data) == (2, sub.topic_id, b"go")
    await cl.send(c.Pubrec(pub.msg_id))
    assert (await cl.expect(c.Pubrel)).msg_id == pub.msg_id
    await cl.send(c.Pubcomp(pub.msg_id))
    await until(lambda: gw.sessions["q2"].inflight is None)


async def test_unacknowledged_publish_is_retransmitted_with_dup(harness, raw_client):
    gw, _ = await harness.gateway(retry_interval=0.1)
    cl = await raw_client(gw.address[1])
    await cl.connect("flaky")
    await cl.send(c.Subscribe(1, "flaky/cmd", qos=1))
    await cl.expect(c.Suback)
    gw.send_to_topic("flaky/cmd", b"x", qos=1)
    first = await cl.expect(c.Publish)
    again = await cl.expect(c.Publish)
    assert (first.dup, again.dup, again.msg_id) == (False, True, first.msg_id)
    await cl.send(c.Puback(first.topic_id, first.msg_id))
    await until(lambda: gw.sessions["flaky"].inflight is None)


async def test_sleeping_client_gets_buffered_messages_when_it_wakes(harness, third_party):
    """mqtt-sn-12 sends PINGREQ without a client id; waking is the same PINGREQ packet class
    of that library with the client id set by hand (its setter stores bytes and breaks encode).
    It subscribes at QoS 0 because it never acknowledges QoS 1 (see the wildcard test)."""
    gw, _ = await harness.gateway()
    node = third_party(gw.address[1], "sleepy")
    await node.do("send_connect")
    inbox = Listener()
    await node.do("send_subscribe", "sleepy/cmd", 0, inbox)
    await node.do("send_disconnect", 30)                       # asleep for 30 s
    assert gw.sessions["sleepy"].state.value == "asleep"
    gw.send_to_topic("sleepy/cmd", b"one", qos=1)
    gw.send_to_topic("sleepy/cmd", b"two", qos=0)
    assert len(gw.sessions["sleepy"].outq) == 2                # buffered, nothing sent
    ping = PingReqPacket()
    ping.client_id = "sleepy"
    await node.do("send_packet", ping.encode())
    await node.poll_until(inbox, 2)
    assert [m.payload for m in inbox.messages] == [b"one", b"two"]
    await node.do("wait_for", True, c.MsgType.PINGRESP)       # back to sleep once the buffer is empty
    await until(lambda: gw.sessions["sleepy"].state.value == "asleep")


async def test_sleeping_client_is_lost_after_its_sleep_timer_and_its_will_goes_out(harness, third_party):
    gw, rec = await harness.gateway(keepalive_grace=1.0)
    watcher = third_party(gw.address[1], "watcher")
    await watcher.do("send_connect")
    wills = Listener()
    await watcher.do("send_subscribe", "status/+", 0, wills)
    node = third_party(gw.address[1], "sensor9")
    node.client.set_will("status/sensor9", "offline", 0, False)
    await node.do("send_connect")
    assert gw.sessions["sensor9"].will_topic == "status/sensor9"
    await node.do("send_disconnect", 1)                       # sleeps 1 s and never wakes
    await watcher.poll_until(wills, 1, timeout=5)
    assert (wills.messages[0].topic_name, wills.messages[0].payload) == ("status/sensor9", b"offline")
    assert ("sensor9", "status/sensor9", "offline") in rec.rows()
    assert "sensor9" not in gw.sessions and gw.stats["wills_published"] == 1


async def test_client_silent_beyond_keepalive_is_lost_with_will(harness, third_party):
    gw, rec = await harness.gateway(keepalive_grace=1.0)
    node = third_party(gw.address[1], "quiet", keep_alive=1)
    node.client.set_will("status/quiet", "gone", 1, False)
    await node.do("send_connect")
    await until(lambda: gw.stats["clients_lost"] == 1, timeout=5)
    await until(lambda: ("quiet", "status/quiet", "gone") in rec.rows())


async def test_clean_disconnect_does_not_publish_the_will(harness, third_party):
    gw, rec = await harness.gateway()
    node = third_party(gw.address[1], "polite")
    node.client.set_will("status/polite", "gone", 0, False)
    await node.do("send_connect")
    await node.do("send_will_topic_update", "status/polite2")
    await node.do("send_will_message_update", "bye")
    assert gw.sessions["polite"].will_topic == "status/polite2"
    await node.do("send_disconnect")
    assert gw.stats["wills_published"] == 0 and rec.rows() == []


async def test_persistent_session_keeps_subscriptions_across_reconnect(harness, raw_client):
    gw, _ = await harness.gateway()
    cl = await raw_client(gw.address[1])
    await cl.connect("keeper", clean=False)
    await cl.send(c.Subscribe(1, "keeper/cmd/+", qos=1))
    await cl.expect(c.Suback)
    await cl.send(c.Disconnect())
    await cl.expect(c.Disconnect)
    assert gw.send_to_topic("keeper/cmd/x", b"held", qos=1) == 1   # buffered for the disconnected session
    cl2 = await raw_client(gw.address[1])
    await cl2.connect("keeper", clean=False)
    reg = await cl2.expect(c.Register)
    assert reg.topic_name == "keeper/cmd/x"
    await cl2.send(c.Regack(reg.topic_id, reg.msg_id))
    pub = await cl2.expect(c.Publish)
    assert (pub.topic_id, pub.data) == (reg.topic_id, b"held")


async def test_searchgw_is_answered_and_advertise_is_sent(harness, third_party, raw_client):
    listener = await raw_client(1)   # only its socket is used: it receives the ADVERTISE
    addr = listener.sock.getsockname()
    gw, _ = await harness.gateway(gateway_id=9, advertise_interval=60, advertise_to=[f"{addr[0]}:{addr[1]}"])
    adv = await listener.expect(c.Advertise)
    assert (adv.gw_id, adv.duration) == (9, 60)
    node = third_party(gw.address[1], None)
    await node.do("send_search_gateway", 1)   # raises unless a GWINFO comes back


async def test_client_allowlist_and_session_limit(harness, third_party, raw_client):
    gw, _ = await harness.gateway(allow_clients=["plant-*"], max_sessions=2)
    intruder = third_party(gw.address[1], "intruder")
    with pytest.raises(MqttSnClientException, match="not supported"):
        await intruder.do("send_connect")
    a = await raw_client(gw.address[1])
    b = await raw_client(gw.address[1])
    d = await raw_client(gw.address[1])
    await a.connect("plant-a")
    await b.connect("plant-b")
    await d.send(c.Connect("plant-d", 60))
    assert (await d.expect(c.Connack)).return_code == ReturnCode.CONGESTION
    assert gw.stats["rejected_clients"] == 1 and gw.stats["sessions_full"] == 1


async def test_rate_limit_drops_a_flooding_client(harness, raw_client):
    gw, rec = await harness.gateway(predefined={1: "f/x"}, rate_limit=1.0, rate_burst=5)
    cl = await raw_client(gw.address[1])
    await cl.connect("flood")
    for i in range(50):
        await cl.send(c.Publish(1, 0, b"1", qos=0, topic_id_type=TopicIdType.PREDEFINED))
    await until(lambda: gw.stats["publishes_in"] + gw.stats["rate_limited"] == 50)
    assert gw.stats["rate_limited"] >= 40


async def test_malformed_datagrams_are_counted_and_dropped(harness, raw_client):
    gw, _ = await harness.gateway(max_datagram=100)
    cl = await raw_client(gw.address[1])
    await cl.send_bytes(b"\x05\x0c\x00")
    await cl.send_bytes(b"\x02\x03")
    await cl.send_bytes(bytes(200))
    await until(lambda: gw.stats["malformed"] == 2 and gw.stats["oversize"] == 1)
    await cl.connect("still-fine")


async def test_forwarder_encapsulated_client(harness, raw_client):
    gw, rec = await harness.gateway(predefined={4: "zig/temp"})
    fwd = await raw_client(gw.address[1], node_id=b"\x00\x13\xa2\x00\x41\x52")
    await fwd.connect("zigbee-node")          # CONNACK comes back encapsulated for the same node
    await fwd.send(c.Publish(4, 1, b"19.5", qos=1, topic_id_type=TopicIdType.PREDEFINED))
    assert (await fwd.expect(c.Puback)).return_code == ReturnCode.ACCEPTED
    assert rec.rows() == [("zigbee-node", "zig/temp", 19.5)]


async def test_sleeping_client_acknowledges_buffered_qos1_before_pingresp(harness, raw_client):
    """The codec client, because mqtt-sn-12 cannot acknowledge a QoS 1 PUBLISH."""
    gw, _ = await harness.gateway()
    cl = await raw_client(gw.address[1])
    await cl.connect("dozer")
    await cl.send(c.Subscribe(1, "dozer/+", qos=1))
    await cl.expect(c.Suback)
    await cl.send(c.Disconnect(60))
    await cl.expect(c.Disconnect)
    gw.send_to_topic("dozer/a", b"1", qos=1)
    gw.send_to_topic("dozer/b", b"2", qos=1)
    assert cl.nothing_waiting()
    woke = await raw_client(gw.address[1])          # wakes up from another address
    await woke.send(c.Pingreq("dozer"))
    for name, data in (("dozer/a", b"1"), ("dozer/b", b"2")):
        reg = await woke.expect(c.Register)
        assert reg.topic_name == name
        await woke.send(c.Regack(reg.topic_id, reg.msg_id))
        pub = await woke.expect(c.Publish)
        assert (pub.topic_id, pub.data, pub.qos) == (reg.topic_id, data, 1)
        await woke.send(c.Puback(pub.topic_id, pub.msg_id))
    await woke.expect(c.Pingresp)
    assert gw.sessions["dozer"].state.value == "asleep"


async def test_long_payload_uses_the_three_octet_length_form(harness, third_party):
    gw, rec = await harness.gateway()
    node = third_party(gw.address[1], "chatty")
    await node.do("send_connect")
    text = "x" * 400                                   # > 255 octets: 0x01 + 2-octet length
    await node.do("send_publish", "chatty/log", text.encode(), 1)
    assert rec.rows() == [("chatty", "chatty/log", text)]


async def test_a_node_publish_reaches_subscribed_nodes_after_the_pipeline(harness, third_party):
    gw, rec = await harness.gateway()
    lamp = third_party(gw.address[1], "lamp")
    await lamp.do("send_connect")
    inbox = Listener()
    await lamp.do("send_subscribe", "hall/switch", 0, inbox)
    switch = third_party(gw.address[1], "switch")
    await switch.do("send_connect")
    await switch.do("send_publish", "hall/switch", b"1", 1, True)    # retained
    await lamp.poll_until(inbox, 1)
    assert inbox.messages[0].payload == b"1"
    assert rec.rows() == [("switch", "hall/switch", 1)]
    late = third_party(gw.address[1], "late")
    await late.do("send_connect")
    late_inbox = Listener()
    await late.do("send_subscribe", "hall/+", 0, late_inbox)           # gets the retained value
    await late.poll_until(late_inbox, 1)
    assert (late_inbox.messages[0].topic_name, late_inbox.messages[0].payload) == ("hall/switch", b"1")


async def test_unacknowledged_message_is_kept_when_the_client_falls_asleep(harness, raw_client):
    gw, _ = await harness.gateway()
    cl = await raw_client(gw.address[1])
    await cl.connect("nap")
    await cl.send(c.Subscribe(1, "nap/cmd", qos=1))
    await cl.expect(c.Suback)
    gw.send_to_topic("nap/cmd", b"important", qos=1)
    first = await cl.expect(c.Publish)
    await cl.send(c.Disconnect(60))                 # sleeps without the PUBACK
    await cl.expect(c.Disconnect)
    await cl.send(c.Pingreq("nap"))
    again = await cl.expect(c.Publish)
    assert again.data == first.data == b"important"
    await cl.send(c.Puback(again.topic_id, again.msg_id))
    await cl.expect(c.Pingresp)


async def test_buffer_for_a_sleeping_client_is_bounded_keeping_the_newest(harness, raw_client):
    gw, _ = await harness.gateway(max_buffered_per_client=3)
    cl = await raw_client(gw.address[1])
    await cl.connect("tiny")
    await cl.send(c.Subscribe(1, "tiny/cmd", qos=0))
    await cl.expect(c.Suback)
    await cl.send(c.Disconnect(60))
    await cl.expect(c.Disconnect)
    for i in range(10):
        gw.send_to_topic("tiny/cmd", str(i).encode(), qos=0)
    assert len(gw.sessions["tiny"].outq) == 3 and gw.stats["buffer_dropped"] == 7
    await cl.send(c.Pingreq("tiny"))
    got = [(await cl.expect(c.Publish)).data for _ in range(3)]
    assert got == [b"7", b"8", b"9"]
    await cl.expect(c.Pingresp)


async def test_qos_minus1_is_rate_limited_and_can_be_switched_off(harness, raw_client):
    gw, rec = await harness.gateway(predefined={1: "a/b"}, anonymous_rate_limit=5.0)
    cl = await raw_client(gw.address[1])
    for _ in range(50):
        await cl.send(c.Publish(1, 0, b"1", qos=-1, topic_id_type=TopicIdType.PREDEFINED))
    await until(lambda: gw.stats["qos_minus1_in"] + gw.stats["rate_limited"] == 50)
    assert gw.stats["rate_limited"] >= 40
    off, _ = await harness.gateway(predefined={1: "a/b"}, allow_qos_minus1=False)
    cl2 = await raw_client(off.address[1])
    await cl2.send(c.Publish(1, 0, b"1", qos=-1, topic_id_type=TopicIdType.PREDEFINED))
    await until(lambda: off.stats["unknown_client"] == 1)
    assert off.stats["qos_minus1_in"] == 0
