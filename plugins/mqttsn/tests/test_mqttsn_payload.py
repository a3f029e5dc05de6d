"""Payload rules: topics and payloads to named readings, and bad payloads made visible."""

from __future__ import annotations

import struct

import pytest

from plugins.mqttsn.payload import PayloadMapper, StructField, TopicRule, topic_matches, validate_filter
from sitegate.model import Quality

BAD = int(Quality.BAD_DECODE)


def one(mapper, topic, payload, client="node", now=100.0):
    b = mapper.map(topic, payload, client, now)
    return None if b is None else (b.device, list(b.points), list(b.values), list(b.timestamps), b.quality)


@pytest.mark.parametrize("filter_, topic, expected", [
    ("a/+/c", "a/b/c", True), ("a/+/c", "a/b/d", False), ("a/#", "a", True), ("a/#", "a/b/c", True),
    ("#", "$SYS/x", False), ("+/x", "$SYS/x", False), ("a/+", "a/b/c", False), ("a/b", "a/b", True),
    ("+", "", True), ("a/+/+", "a/b", False),
])
def test_topic_filters_match_like_mqtt(filter_, topic, expected):
    assert topic_matches(filter_, topic) is expected


@pytest.mark.parametrize("bad, why", [("", "empty"), ("a/#/b", "last level"), ("a/b+", "whole level")])
def test_bad_filters_say_why(bad, why):
    with pytest.raises(ValueError, match=why):
        validate_filter(bad)


def test_numbers_keep_ints_and_floats_and_flag_garbage():
    m = PayloadMapper([TopicRule("t/#")])
    assert one(m, "t/a", b"21")[2] == [21]
    assert one(m, "t/a", b"21.5")[2] == [21.5]
    assert one(m, "t/a", b" -1e3 ")[2] == [-1000.0]
    assert one(m, "t/a", b"hot") == ("node", ["a"], [None], [100.0], [BAD])


def test_templates_name_devices_and_points_from_the_topic():
    m = PayloadMapper([TopicRule("site/+/+/v", device="{1}-{client}", point="{2}:{-1}")], device_prefix="e.")
    assert one(m, "site/hall/temp/v", b"1")[:2] == ("e.hall-node", ["temp:v"])
    with pytest.raises(ValueError, match=r"unknown placeholder \{nope\}"):
        TopicRule("x", device="{nope}")


def test_json_paths_timestamp_and_missing_values():
    m = PayloadMapper([TopicRule("j/+", format="json", values={"t": "env.t", "h": "env.h.1"},
                                 timestamp="ts", timestamp_unit="ms")])
    assert one(m, "j/1", b'{"env": {"t": 20.5, "h": [1, 55]}, "ts": 1700000000500}') == \
        ("node", ["t", "h"], [20.5, 55], [1700000000.5] * 2, None)
    # a missing path is a bad reading, the rest stays good; no timestamp: reception time
    assert one(m, "j/1", b'{"env": {"t": 3}}') == ("node", ["t", "h"], [3, None], [100.0] * 2, [0, BAD])
    assert one(m, "j/1", b"{not json")[4] == [BAD, BAD]
    single = PayloadMapper([TopicRule("k", format="json", point="power", value="data.kw")])
    assert one(single, "k", b'{"data": {"kw": 4.2}}')[1:3] == (["power"], [4.2])


def test_struct_layout_with_scale_padding_and_timestamp():
    rule = TopicRule("b/+", format="struct", byte_order="big", timestamp="ts", fields=[
        StructField("temp", "int16", scale=0.01), StructField("spare", "pad", size=2),
        StructField("volt", "uint16", scale=0.001, offset=0.5), StructField("ts", "uint32")])
    m = PayloadMapper([rule])
    dev, points, values, stamps, q = one(m, "b/1", struct.pack(">hxxHI", -250, 3300, 1700000000))
    assert points == ["temp", "volt"] and values == [pytest.approx(-2.5), pytest.approx(3.8)]
    assert stamps == [1700000000.0] * 2 and q is None
    assert one(m, "b/1", b"\x00\x01")[4] == [BAD, BAD]     # wrong size: visible, not dropped


def test_rule_errors_name_the_field():
    with pytest.raises(ValueError, match="format: expected one of"):
        TopicRule("a", format="xml")
    with pytest.raises(ValueError, match="type: expected one of"):
        StructField("x", "int17")
    with pytest.raises(ValueError, match="timestamp: no field named 'when'"):
        TopicRule("a", format="struct", fields=[StructField("x")], timestamp="when")
    with pytest.raises(ValueError, match="fields: only used with format struct"):
        TopicRule("a", format="json", fields=[StructField("x")])


def test_unmapped_topics_follow_the_policy_and_the_first_rule_wins():
    rules = [TopicRule("a/+", point="first"), TopicRule("a/b", point="second")]
    assert one(PayloadMapper(rules), "a/b", b"1")[1] == ["first"]
    assert one(PayloadMapper(rules), "z/y", b"ok")[1:3] == (["z/y"], ["ok"])   # auto: text
    assert PayloadMapper(rules, unmapped="drop").map("z/y", b"1", "n", 0.0) is None


def test_rule_cache_stays_bounded_under_many_topics():
    m = PayloadMapper([TopicRule("#")], cache_size=64)
    for i in range(1000):
        m.map(f"t/{i}", b"1", f"c{i}", 0.0)
    assert len(m._targets) <= 64 and len(m._cache) <= 64
