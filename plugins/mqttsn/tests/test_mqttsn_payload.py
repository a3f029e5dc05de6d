"""The gateway's payload glue: rules (the core's mapping, tests/core/test_payloads.py) to Batches,
the unmapped policy, the device prefix, and bad payloads made visible and reported."""

from __future__ import annotations

import struct

import pytest

from plugins.mqttsn.payload import PayloadMapper, StructField, TopicRule
from sitegate.model import Quality

BAD = int(Quality.BAD_DECODE)


def one(mapper, topic, payload, client="node", now=100.0):
    b = mapper.map(topic, payload, client, now)
    return None if b is None else (b.device, list(b.points), list(b.values), list(b.timestamps), b.quality)


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


def test_rules_are_the_shared_mapping_with_client_as_the_default_device():
    rule = TopicRule("site/{zone}/+/env", format="json", value="t")
    assert rule.filter == "site/+/+/env"
    assert one(PayloadMapper([rule]), "site/z1/x/env", b'{"t": 1}', client="n1")[:3] == ("n1", ["env"], [1])
    named = PayloadMapper([TopicRule("p/{zone}/{device}", device="{zone}.{device}")], device_prefix="e.")
    assert one(named, "p/a/b", b"2")[:3] == ("e.a.b", ["b"], [2])
    with pytest.raises(ValueError, match="topic: a topic filter is required"):
        TopicRule("")
    with pytest.raises(ValueError, match="format: expected one of"):
        TopicRule("a", format="sitegate")     # the mqtt adapter's own format, not the gateway's


def test_bad_payloads_are_reported_with_their_bytes():
    seen = []
    m = PayloadMapper([TopicRule("t/+"), TopicRule("d/#", device="{4}")], device_prefix="e.",
                      on_malformed=lambda *args: seen.append(args))
    assert one(m, "t/a", b"hot", client="n")[4] == [BAD]
    assert one(m, "t/a", b"1") is not None and len(seen) == 1
    topic, payload, client, device, error = seen[0]
    assert (topic, payload, client, device) == ("t/a", b"hot", "n", "e.n") and "number as text" in str(error)
    assert m.map("d/x", b"1", "n", 0.0) is None                 # no device name: reported, no readings
    assert "has no level 4" in str(seen[1][4]) and seen[1][3] == ""
    auto = PayloadMapper([], on_malformed=lambda *args: seen.append(args))
    assert one(auto, "z", b"\xff")[4] == [BAD] and len(seen) == 3    # auto: neither a number nor UTF-8 text


def test_unmapped_topics_follow_the_policy_and_the_first_rule_wins():
    rules = [TopicRule("a/+", point="first"), TopicRule("a/b", point="second")]
    assert one(PayloadMapper(rules), "a/b", b"1")[1] == ["first"]
    assert one(PayloadMapper(rules), "z/y", b"ok")[1:3] == (["z/y"], ["ok"])   # auto: text
    assert PayloadMapper(rules, unmapped="drop").map("z/y", b"1", "n", 0.0) is None


def test_rule_cache_stays_bounded_under_many_topics():
    m = PayloadMapper([TopicRule("#")], cache_size=64)
    for i in range(1000):
        m.map(f"t/{i}", b"1", f"c{i}", 0.0)
    assert len(m._targets) <= 64 and len(m.table._cache) <= 64
    assert all(len(mapper._names) <= 64 for _, mapper in m.table.mappers)
