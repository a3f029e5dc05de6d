"""The adapter's payload glue, the uplink envelope and the config checks: pure functions, no broker."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plugins.mqtt import envelope
from plugins.mqtt.config import MqttConfig, PublishConfig, Subscription
from plugins.mqtt.payload import MalformedPayload, Mapper
from sitegate.errors import ConfigError
from sitegate.model import Batch
from sitegate.structure import structure


def test_subscriptions_map_with_the_shared_mapper_and_read_other_sitegates():
    # The mapping itself is tested in tests/core/test_payloads.py; here the adapter's glue.
    from plugins.mqtt.payload import DECODERS
    sub = Subscription(topic="f/{zone}/{device}/data", format="json", value="v")
    assert sub.filter == "f/+/+/data", "the filter defaults to the topic with named levels as +"
    [d] = Mapper(sub, entry="in").decode("f/z/d7/data", b'{"v": 1}', 5.0)
    assert (d.device, d.points, d.values) == ("d7", ["data"], [1])
    up = envelope.encode_batch("edge", Batch("line.d", ["a"], [1.5], [10.0], None, "sim", 4))
    [d] = Mapper(Subscription(filter="edge/#", format="sitegate"), decoders=DECODERS).decode("edge/x", up, 0.0)
    assert (d.device, d.values, d.origin.seq, d.origin.site) == ("line.d", [1.5], 4, "edge")
    with pytest.raises(MalformedPayload, match="sitegate payload"):
        Mapper(Subscription(filter="edge/#", format="sitegate"), decoders=DECODERS).decode("edge/x", b"{}", 0.0)


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
