"""Payload mapping, the uplink envelope and the config checks: pure functions, no broker."""

from __future__ import annotations

import json
import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plugins.mqtt import envelope
from plugins.mqtt.config import MqttConfig, PublishConfig, Subscription
from plugins.mqtt.payload import MalformedPayload, Mapper, PayloadMapping, StructField, parse_path
from sitegate.errors import ConfigError
from sitegate.model import Batch
from sitegate.structure import structure


def test_json_path_with_indexes():
    assert parse_path("data.values[0].v") == ("data", "values", 0, "v")
    with pytest.raises(ValueError, match="empty JSON path"):
        parse_path("")


def test_json_mapping_takes_names_from_topic_levels():
    m = Mapper(Subscription(filter="f/+/+/data", topic="f/{zone}/{device}/data", device="{zone}-{device}",
                            format="json", value="v", timestamp="t", timestamp_unit="ms"))
    [d] = m.decode("f/z1/press/data", b'{"v": 2.5, "t": 1700000000500}', 9.0)
    assert (d.device, d.points, d.values, d.timestamps) == ("z1-press", ["data"], [2.5], [1700000000.5])


def test_level_indexes_like_the_mqttsn_rules():
    m = Mapper(PayloadMapping(format="number", device="{1}", point="{-1}"))
    [d] = m.decode("s/th1/temp", b"21", 0.0)
    assert (d.device, d.points, d.values) == ("th1", ["temp"], [21])


def test_iso_timestamps_and_several_points():
    m = Mapper(PayloadMapping(format="json", values={"a": "x.a", "b": "x.b.1"}, timestamp="at", timestamp_unit="iso"))
    [d] = m.decode("t", b'{"x": {"a": 1, "b": [0, true]}, "at": "2024-01-01T00:00:00Z"}', 0.0)
    assert d.points == ["a", "b"] and d.values == [1, True] and d.timestamps == [1704067200.0] * 2


@pytest.mark.parametrize("payload, message", [
    (b"{", "not JSON"),
    (b'{"v": null, "t": 1}', "expected a number"),
    (b'{"w": 1, "t": 1}', "no 'v'"),
    (b'{"v": 1, "t": "yesterday"}', "timestamp"),
])
def test_malformed_json_says_what(payload, message):
    m = Mapper(PayloadMapping(format="json", value="v", timestamp="t"))
    with pytest.raises(MalformedPayload, match=message):
        m.decode("t", payload, 0.0)


def test_number_payload_keeps_integers():
    m = Mapper(PayloadMapping(topic="s/{device}/{point}", format="number"))
    assert m.decode("s/d/c", b" 42 ", 1.0)[0].values == [42]
    assert m.decode("s/d/t", b"21.5", 1.0)[0].values == [21.5]
    with pytest.raises(MalformedPayload, match="number as text"):
        m.decode("s/d/t", b"warm", 1.0)


def test_struct_layout_with_padding_scale_and_timestamp_field():
    m = Mapper(PayloadMapping(format="struct", byte_order="big", timestamp="at", fields=[
        StructField("t", "int16", scale=0.1, offset=1.0), StructField(type="pad", size=2),
        StructField("n", "uint32"), StructField("at", "uint32")]))
    [d] = m.decode("x", struct.pack(">hxxII", -215, 7, 1700000000), 3.0)
    assert d.points == ["t", "n"] and d.values[0] == pytest.approx(-20.5) and d.values[1] == 7
    assert d.timestamps == [1700000000.0, 1700000000.0]
    with pytest.raises(MalformedPayload, match="take 12"):
        m.decode("x", b"\x00\x01", 3.0)


def test_envelope_round_trip_keeps_ids_and_columns():
    b = Batch("line.dev0", ["a", "b"], [1.5, "on"], [10.0, 11.0], [0, 0x80], "sim", 41)
    [e] = envelope.decode(envelope.encode_batch("plant/a", b))
    assert (e.site, e.device, e.seq, e.points, e.values, e.timestamps, e.quality) == \
        ("plant/a", "line.dev0", 41, ["a", "b"], [1.5, "on"], [10.0, 11.0], [0, 0x80])
    assert e.msg_id(1) == "plant/a/line.dev0/42"


def test_envelope_shares_one_timestamp_and_never_writes_nan():
    doc = json.loads(envelope.encode_batch("s", Batch("d", ["a", "b"], [math.nan, 2.0], [5.0, 5.0], None, "", 0)))
    assert doc["ts"] == 5.0 and doc["values"] == [None, 2.0] and doc["producedAt"] == 5.0


@given(st.lists(st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(-2**53, 2**53),
                          st.booleans(), st.text(max_size=5)), min_size=1, max_size=8),
       st.text(min_size=1, max_size=8), st.integers(0, 2**40))
def test_envelope_round_trip_property(values, device, seq):
    n = len(values)
    b = Batch(device, [f"p{i}" for i in range(n)], values, [1.0 + i for i in range(n)], None, "", seq)
    [e] = envelope.decode(envelope.encode_batch("site", b))
    assert e.values == values and e.device == device and e.seq == seq


@pytest.mark.parametrize("payload", [b"[]", b'{"schemaVersion": 1}', b'{"schemaVersion": 9, "deviceId": "d"}',
                                     b'{"schemaVersion": 1, "deviceId": "d", "seqNo": -1, "site": "s", "point": "p", "value": 1, "ts": 1}',
                                     b'{"schemaVersion": 1, "deviceId": "d", "seqNo": 1, "site": "s", "points": ["a"], "values": [], "ts": []}'])
def test_envelope_refuses_what_it_cannot_trust(payload):
    with pytest.raises(MalformedPayload):
        envelope.decode(payload)


def _config(raw: dict):
    return structure(raw, MqttConfig, path="config")


@pytest.mark.parametrize("raw, message", [
    ({"publish": {"mode": "batch", "topic": "{site}/{device}/{point}"}}, "cannot be used in batch mode"),
    ({"publish": {"topic": "{site}/{nope}"}}, "unknown field"),
    ({"publish": {"topic": "a/+/{device}"}}, "wildcards"),
    ({"subscribe": [{"filter": "a/#/b"}]}, "not a valid MQTT topic filter"),
    ({"subscribe": [{"filter": "a/+", "topic": "a/{x}/{y}"}]}, "levels"),
    ({"subscribe": [{"filter": "a/+", "topic": "a/{x}", "device": "{zone}"}]}, "unknown placeholder"),
    ({"subscribe": [{"filter": "a", "format": "struct"}]}, "fields"),
    ({"subscribe": [{"filter": "a", "format": "xml"}]}, "format"),
    ({"tls": {"cert": "c.pem"}}, "both cert and key"),
    ({"password": "x"}, "without username"),
    ({"client_id": "has space"}, "client_id"),
])
def test_config_errors_say_what_and_where(raw, message):
    with pytest.raises((ConfigError, ValueError), match=message):
        _config(raw)


def test_defaults_persistent_only_when_subscribing():
    assert not MqttConfig().persistent
    assert MqttConfig(subscribe=[Subscription(filter="a/#")]).persistent
    assert PublishConfig().topic_template == "{site}/{device}"
    assert PublishConfig(mode="point").topic_template == "{site}/{device}/{point}"


def test_protocol_written_either_way():
    assert _config({"protocol": 5}).protocol == "5"
    assert _config({"protocol": "3.1.1"}).protocol == "3.1.1"
    with pytest.raises((ConfigError, ValueError), match="3.1.1"):
        _config({"protocol": 3.1})
