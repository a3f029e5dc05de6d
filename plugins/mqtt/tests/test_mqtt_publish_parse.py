"""The adapter's own PUBLISH parser agrees with paho's wherever it answers, and hands everything else to paho."""

from __future__ import annotations

import struct

from hypothesis import given, settings, strategies as st
from paho.mqtt import _packet
from paho.mqtt.client import MQTTProtocolVersion

from plugins.mqtt.connection import parse_publish


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _body(topic: bytes, qos: int, mid: int, payload: bytes, props: bytes | None) -> bytes:
    body = struct.pack("!H", len(topic)) + topic
    if qos:
        body += struct.pack("!H", mid)
    if props is not None:
        body += _varint(len(props)) + props
    return body + payload


@settings(max_examples=300)
@given(topic=st.text(min_size=1, max_size=40).filter(lambda t: "\x00" not in t),
       qos=st.sampled_from([0, 1]), mid=st.integers(1, 65535), payload=st.binary(max_size=200),
       v5=st.booleans())
def test_plain_messages_parse_as_paho_parses_them(topic, qos, mid, payload, v5):
    body = _body(topic.encode(), qos, mid, payload, b"" if v5 else None)
    got = parse_publish(body, qos, v5)
    proto = MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311
    want = _packet.decode_publish(0x30 | qos << 1, body, proto)
    assert got == (want.topic.decode(), want.mid, want.payload)


def test_messages_with_properties_are_left_to_paho():
    user_property = b"\x26" + struct.pack("!H", 1) + b"k" + struct.pack("!H", 1) + b"v"
    body = _body(b"a/b", 1, 7, b"21.5", user_property)
    assert parse_publish(body, 1, True) is None
    assert parse_publish(_body(b"a/b", 1, 7, b"21.5", b""), 1, True) == ("a/b", 7, b"21.5")


def test_bad_topics_and_truncated_packets_are_left_to_paho():
    assert parse_publish(_body(b"", 0, 0, b"x", None), 0, False) is None          # empty topic
    assert parse_publish(_body(b"\xff\xfe", 0, 0, b"x", None), 0, False) is None  # not UTF-8
    assert parse_publish(b"\x00\x09abc", 0, False) is None                        # topic runs past the end
    assert parse_publish(_body(b"t", 1, 5, b"", None)[:-1], 1, False) is None     # packet id cut off
    assert parse_publish(_body(b"t", 1, 5, b"", None), 1, True) is None           # no property length


@given(st.binary(max_size=64), st.sampled_from([0, 1]), st.booleans())
def test_any_bytes_give_a_parse_or_none_never_an_error(data, qos, v5):
    got = parse_publish(data, qos, v5)
    assert got is None or (isinstance(got[0], str) and isinstance(got[2], bytes))


def _publish_packet(topic: str, mid: int, payload: bytes) -> bytes:
    body = _body(topic.encode(), 1, mid, payload, None)
    return bytes([0x32]) + _varint(len(body)) + body


def test_one_wake_up_parses_every_complete_packet_already_read():
    # paho parses one packet per select() wake-up; the client reads in chunks, so it must parse
    # every complete packet of a chunk at once (else they wait for the next byte from the broker).
    import socket

    import paho.mqtt.client as mqtt

    from plugins.mqtt.connection import _Client

    ours, broker = socket.socketpair()
    ours.setblocking(False)
    client = _Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311, manual_ack=True)
    got = []
    client.on_received = got.append
    client._sock = ours
    try:
        stream = b"".join(_publish_packet(f"t/{i}", i + 1, b"%d" % i) for i in range(200))
        last = _publish_packet("t/last", 999, b"end")
        broker.sendall(stream + last[:5])          # 200 packets and the start of one more
        assert client.loop_read() == mqtt.MQTT_ERR_SUCCESS
        assert [(m.topic, m.mid, m.payload) for m in got] == [(f"t/{i}", i + 1, b"%d" % i) for i in range(200)]
        broker.sendall(last[5:])
        client.loop_read()
        assert (got[-1].topic, got[-1].payload, len(got)) == ("t/last", b"end", 201)
    finally:
        client._sock = None
        ours.close()
        broker.close()
