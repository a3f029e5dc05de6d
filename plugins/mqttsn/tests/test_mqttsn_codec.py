"""Property tests of the MQTT-SN codec: every message type round-trips, and no byte string
makes `decode` raise anything but DecodeError."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plugins.mqttsn import codec as c
from plugins.mqttsn.codec import DecodeError, TopicIdType, decode, encode

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
qos = st.sampled_from([-1, 0, 1, 2])
rc = st.sampled_from(list(c.ReturnCode)) | st.integers(4, 0xFF)
# Sizes chosen so that some messages cross 255 octets and take the three-octet length form.
text = st.text(max_size=40) | st.text(min_size=250, max_size=300)
blob = st.binary(max_size=40) | st.binary(min_size=250, max_size=400)
tid_type = st.sampled_from(list(TopicIdType))


def sub_like(cls):
    normal = st.builds(cls, msg_id=u16, topic_name=text, topic_id=st.just(0),
                       topic_id_type=st.just(TopicIdType.NORMAL), qos=qos, dup=st.booleans())
    by_id = st.builds(cls, msg_id=u16, topic_name=st.none(), topic_id=u16,
                      topic_id_type=st.sampled_from([TopicIdType.PREDEFINED, TopicIdType.SHORT]), qos=qos,
                      dup=st.booleans())
    return normal | by_id


STRATEGIES = {
    c.Advertise: st.builds(c.Advertise, u8, u16),
    c.SearchGw: st.builds(c.SearchGw, u8),
    c.GwInfo: st.builds(c.GwInfo, u8, blob),
    c.Connect: st.builds(c.Connect, text, u16, st.booleans(), st.booleans(), u8),
    c.Connack: st.builds(c.Connack, rc),
    c.WillTopicReq: st.builds(c.WillTopicReq),
    c.WillTopic: st.builds(c.WillTopic, st.none() | text, qos, st.booleans()).filter(
        lambda m: m.topic is not None or (m.qos == 0 and not m.retain)),
    c.WillMsgReq: st.builds(c.WillMsgReq),
    c.WillMsg: st.builds(c.WillMsg, blob),
    c.Register: st.builds(c.Register, u16, u16, text),
    c.Regack: st.builds(c.Regack, u16, u16, rc),
    c.Publish: st.builds(c.Publish, u16, u16, blob, qos, tid_type, st.booleans(), st.booleans()),
    c.Puback: st.builds(c.Puback, u16, u16, rc),
    c.Pubcomp: st.builds(c.Pubcomp, u16),
    c.Pubrec: st.builds(c.Pubrec, u16),
    c.Pubrel: st.builds(c.Pubrel, u16),
    c.Subscribe: sub_like(c.Subscribe),
    c.Suback: st.builds(c.Suback, u16, u16, rc, qos),
    c.Unsubscribe: sub_like(c.Unsubscribe),
    c.Unsuback: st.builds(c.Unsuback, u16),
    c.Pingreq: st.builds(c.Pingreq, st.none() | st.text(min_size=1, max_size=23)),
    c.Pingresp: st.builds(c.Pingresp),
    c.Disconnect: st.builds(c.Disconnect, st.none() | u16),
    c.WillTopicUpd: st.builds(c.WillTopicUpd, st.none() | text, qos, st.booleans()).filter(
        lambda m: m.topic is not None or (m.qos == 0 and not m.retain)),
    c.WillTopicResp: st.builds(c.WillTopicResp, rc),
    c.WillMsgUpd: st.builds(c.WillMsgUpd, blob),
    c.WillMsgResp: st.builds(c.WillMsgResp, rc),
}
PLAIN = st.one_of(*STRATEGIES.values())
STRATEGIES[c.Encapsulated] = st.builds(c.Encapsulated, st.integers(0, 3), st.binary(max_size=60), PLAIN)
ANY = st.one_of(*STRATEGIES.values())


def test_every_message_type_has_a_strategy():
    assert set(STRATEGIES) == set(c.MESSAGE_TYPES)
    assert {cls.TYPE for cls in c.MESSAGE_TYPES} == set(c.MsgType)


@pytest.mark.parametrize("cls", list(STRATEGIES), ids=lambda cls: cls.__name__)
def test_round_trip_for_every_message_type(cls):
    @settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
    @given(STRATEGIES[cls])
    def check(msg):
        wire = encode(msg)
        assert decode(wire) == msg
        if cls is not c.Encapsulated:
            # The length field says the whole datagram; the three-octet form only when needed.
            if len(wire) <= 255:
                assert wire[0] == len(wire) and wire[1] == cls.TYPE
            else:
                assert wire[0] == 0x01 and struct.unpack(">H", wire[1:3])[0] == len(wire) and wire[3] == cls.TYPE

    check()


def test_known_bytes_from_the_spec_layouts():
    # PUBLISH QoS 1, predefined topic id 5, msg id 0x1234, payload "21.5"
    assert encode(c.Publish(5, 0x1234, b"21.5", qos=1, topic_id_type=TopicIdType.PREDEFINED)) == \
        b"\x0b\x0c\x21\x00\x05\x12\x3421.5"
    # QoS -1 is 0b11 in the flags
    assert decode(b"\x08\x0c\x62\x61\x62\x00\x00\x31").qos == -1
    # CONNECT: flags clean+will, protocol 1, keepalive 60, client "n1"
    assert decode(b"\x08\x04\x0c\x01\x00\x3cn1") == c.Connect("n1", 60, clean_session=True, will=True)
    # three-octet length form accepted even for a short message
    assert decode(b"\x01\x00\x04\x16") == c.Pingreq()
    # forwarder encapsulation around a PINGREQ
    assert decode(b"\x05\xfe\x01\xab\xcd\x02\x16") == c.Encapsulated(1, b"\xab\xcd", c.Pingreq())
    assert c.short_topic_name(c.short_topic_id("ab")) == "ab"


@pytest.mark.parametrize("wire, what, offset", [
    (b"", "shorter than any message", 0),
    (b"\x03\x0c", "datagram has 2", 0),
    (b"\x02\x03", "unknown message type 0x03", 1),
    (b"\x07\x0c\x03\x00\x01\x00\x01", "reserved", 2),
    (b"\x04\x0b\x00\x01", "REGACK body must be 5 octets", 2),
    (b"\x06\x0a\x00\x01\x00", "length field says 6", 0),
    (b"\x07\x0a\x00\x00\x00\x01\xff", "not valid UTF-8", 6),
    (b"\x03\xfe\x00\x05\xfe\x00\x02\x16", "cannot contain another", 4),
])
def test_decode_errors_say_what_and_where(wire, what, offset):
    with pytest.raises(DecodeError) as info:
        decode(wire)
    assert what in str(info.value)
    assert info.value.offset == offset
    assert f"at byte {offset}" in str(info.value)


def test_encode_refuses_out_of_range_fields_naming_them():
    with pytest.raises(c.EncodeError, match="msg_id"):
        encode(c.Pubrel(70000))
    with pytest.raises(c.EncodeError, match="qos"):
        encode(c.Publish(1, 1, b"", qos=3))


@settings(max_examples=1500, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_decode_error(data):
    try:
        decode(data)
    except DecodeError:
        pass


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ANY, st.lists(st.tuples(st.integers(0, 400), u8), min_size=1, max_size=4), st.integers(-5, 5))
def test_mutated_messages_raise_only_decode_error(msg, flips, resize):
    wire = bytearray(encode(msg))
    for pos, value in flips:
        wire[pos % len(wire)] = value
    if resize > 0:
        wire += bytes(resize)
    elif resize < 0:
        del wire[resize:]
    try:
        out = decode(bytes(wire))
    except DecodeError:
        return
    # Whatever decodes must encode again (the decoder only builds valid messages).
    encode(out)
