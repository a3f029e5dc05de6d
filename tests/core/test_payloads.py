"""sitegate.payloads: the one payload mapping of the mqtt adapter and the MQTT-SN gateway.

Topic filters, templates from topic levels (by index and by name), the four formats,
timestamps, and malformed payloads: one MalformedPayload saying what and where, with
what could be read (`partial`, bad values marked BAD_DECODE).
"""

from __future__ import annotations

import struct

import attrs
import pytest

from sitegate.errors import ConfigError
from sitegate.payloads import (BAD, Decoded, MalformedPayload, Mapper, MapperTable, PayloadMapping, StructField,
                               filter_of, parse_path, topic_matches, validate_filter)
from sitegate.structure import structure


def one(mapping, topic, payload, now=100.0, client="node", **kw) -> Decoded:
    [d] = Mapper(mapping, **kw).decode(topic, payload, now, client)
    return d


def bad(mapping, topic, payload, now=100.0, client="node", **kw) -> MalformedPayload:
    with pytest.raises(MalformedPayload) as info:
        Mapper(mapping, **kw).decode(topic, payload, now, client)
    return info.value


@attrs.frozen
class _WithClient(PayloadMapping):
    """An adapter that knows who published (like the MQTT-SN gateway)."""

    placeholders = PayloadMapping.placeholders | {"client"}
    default_device = "{client}"


# --- topic filters ---------------------------------------------------------------------------

@pytest.mark.parametrize("filter_, topic, expected", [
    ("a/+/c", "a/b/c", True), ("a/+/c", "a/b/d", False), ("a/#", "a", True), ("a/#", "a/b/c", True),
    ("#", "$SYS/x", False), ("+/x", "$SYS/x", False), ("a/+", "a/b/c", False), ("a/b", "a/b", True),
    ("+", "", True), ("a/+/+", "a/b", False), ("$SYS/#", "$SYS/x", True),
])
def test_topic_filters_match_like_mqtt(filter_, topic, expected):
    assert topic_matches(filter_, topic) is expected


@pytest.mark.parametrize("bad_filter, why", [("", "empty"), ("a/#/b", "last level"), ("a/b+", "whole level")])
def test_bad_filters_say_why(bad_filter, why):
    with pytest.raises(ValueError, match=why):
        validate_filter(bad_filter)


def test_wildcards_can_be_refused():
    with pytest.raises(ValueError, match="not allowed"):
        validate_filter("a/+", allow_wildcards=False)
    assert validate_filter("a/b", allow_wildcards=False) == "a/b"


def test_named_levels_are_single_level_wildcards():
    assert filter_of("factory/{zone}/{device}/data") == "factory/+/+/data"
    assert filter_of("a/#") == "a/#"


def test_mapper_table_takes_the_first_match_and_stays_bounded():
    first, second = Mapper(PayloadMapping(point="first")), Mapper(PayloadMapping(point="second"))
    table = MapperTable([("a/+", first), ("a/b", second)], cache_size=64)
    assert table.lookup("a/b") is first and table.lookup("z") is None
    for i in range(1000):
        table.lookup(f"a/{i}")
    assert len(table._cache) <= 64


# --- names from the topic -------------------------------------------------------------------

def test_json_mapping_takes_names_from_topic_levels():
    m = PayloadMapping(topic="f/{zone}/{device}/data", device="{zone}-{device}", format="json", value="v",
                       timestamp="t", timestamp_unit="ms")
    d = one(m, "f/z1/press/data", b'{"v": 2.5, "t": 1700000000500}', 9.0)
    assert (d.device, d.points, d.values, d.timestamps) == ("z1-press", ["data"], [2.5], [1700000000.5])


def test_level_indexes_and_defaults():
    d = one(PayloadMapping(format="number", device="{1}", point="{-1}"), "s/th1/temp", b"21")
    assert (d.device, d.points, d.values) == ("th1", ["temp"], [21])
    # named {device} and {point} levels are the defaults; without them the entry itself and the last level
    d = one(PayloadMapping(topic="s/{device}/{point}"), "s/d/c", b"1")
    assert (d.device, d.points) == ("d", ["c"])
    d = one(PayloadMapping(), "s/d/c", b"1")
    assert (d.device, d.points) == (None, ["c"])


def test_client_topic_and_entry_placeholders():
    m = _WithClient(device="{1}-{client}", point="{2}:{-1}")
    d = one(m, "site/hall/temp/v", b"1", client="node")
    assert (d.device, d.points) == ("hall-node", ["temp:v"])
    assert one(_WithClient(), "x/y", b"1", client="n7").device == "n7"       # the adapter's default device
    d = one(PayloadMapping(device="{entry}-{1}", point="{topic}"), "a/b", b"1", entry="in")
    assert (d.device, d.points) == ("in-b", ["a/b"])
    # the cache of names is per client where the templates use it
    m = Mapper(_WithClient())
    assert m.decode("t", b"1", 0.0, "a")[0].device == "a" and m.decode("t", b"1", 0.0, "b")[0].device == "b"


def test_a_topic_without_the_level_is_malformed():
    exc = bad(PayloadMapping(topic="#", device="{3}"), "a/b", b"1")
    assert "has no level 3" in str(exc) and exc.partial is None


def test_name_cache_stays_bounded_under_many_topics():
    m = Mapper(PayloadMapping(), cache_size=64)
    for i in range(1000):
        m.decode(f"t/{i}", b"1", 0.0)
    assert len(m._names) <= 64


# --- formats ------------------------------------------------------------------------------------

def test_numbers_keep_ints_and_floats_and_flag_garbage():
    m = PayloadMapping(topic="s/{device}/{point}")
    assert one(m, "s/d/c", b" 42 ").values == [42]
    assert one(m, "s/d/t", b"21.5").values == [21.5]
    assert one(m, "s/d/t", b" -1e3 ").values == [-1000.0]
    exc = bad(m, "s/d/t", b"warm")
    assert "number as text" in str(exc)
    assert exc.partial == Decoded("d", ["t"], [None], [100.0], [BAD])
    for payload in (b"nan", b"inf", b"1_000", b""):
        assert bad(m, "s/d/t", payload).partial.quality == [BAD], payload


def test_text_is_utf8():
    assert one(PayloadMapping(format="text"), "a", "grün".encode()).values == ["grün"]
    assert "not UTF-8" in str(bad(PayloadMapping(format="text"), "a", b"\xff\xfe"))


def test_json_paths_with_indexes():
    assert parse_path("data.values[0].v") == ("data", "values", 0, "v")
    with pytest.raises(ValueError, match="empty JSON path"):
        parse_path("")
    m = PayloadMapping(format="json", values={"a": "x.a", "b": "x.b.1", "c": "x.b[0]"})
    assert one(m, "t", b'{"x": {"a": 1, "b": [0, true]}}').values == [1, True, 0]
    single = PayloadMapping(format="json", point="power", value="data.kw")
    assert one(single, "k", b'{"data": {"kw": 4.2}}').points == ["power"]
    assert one(PayloadMapping(format="json"), "k", b"7").values == [7]     # no path: the whole document


def test_timestamps_in_seconds_milliseconds_and_iso():
    at = {"s": (b"1700000000.5", 1700000000.5), "ms": (b"1700000000500", 1700000000.5),
          "iso": (b'"2024-01-01T00:00:00Z"', 1704067200.0)}
    for unit, (raw, expected) in at.items():
        m = PayloadMapping(format="json", value="v", timestamp="at", timestamp_unit=unit)
        assert one(m, "t", b'{"v": 1, "at": ' + raw + b"}").timestamps == [expected], unit
    m = PayloadMapping(format="json", value="v")
    assert one(m, "t", b'{"v": 1}', now=5.0).timestamps == [5.0]          # no timestamp: receipt


@pytest.mark.parametrize("payload, message", [
    (b"{", "not JSON"),
    (b'{"v": null, "t": 1}', "expected a number"),
    (b'{"v": {"a": 1}, "t": 1}', "got an object"),
    (b'{"w": 1, "t": 1}', "JSON path 'v': no 'v'"),
    (b'{"v": 1, "t": "yesterday"}', "timestamp 't'"),
    (b'{"v": 1, "t": 0}', "after 1970"),
    (b'{"v": 1e999, "t": 1}', "finite"),
])
def test_malformed_json_says_what_and_where(payload, message):
    with pytest.raises(MalformedPayload, match=message):
        Mapper(PayloadMapping(format="json", value="v", timestamp="t")).decode("t", payload, 0.0)


def test_malformed_json_keeps_what_could_be_read():
    m = PayloadMapping(format="json", values={"t": "env.t", "h": "env.h.1"}, timestamp="ts", timestamp_unit="ms")
    d = one(m, "j/1", b'{"env": {"t": 20.5, "h": [1, 55]}, "ts": 1700000000500}')
    assert (d.points, d.values, d.timestamps, d.quality) == (["t", "h"], [20.5, 55], [1700000000.5] * 2, None)
    # a missing path is a bad value, the rest stays good; a missing timestamp: reception time
    assert "no 'h'" in str(bad(m, "j/1", b'{"env": {"t": 3}, "ts": 1700000000500}'))
    exc = bad(m, "j/1", b'{"env": {"t": 3}}')
    assert "no 'ts'" in str(exc)          # the first problem is named
    assert exc.partial == Decoded(None, ["t", "h"], [3, None], [100.0] * 2, [0, BAD])
    assert bad(m, "j/1", b"{not json").partial.quality == [BAD, BAD]
    # only the timestamp is bad: every value is good, at the reception time
    exc = bad(m, "j/1", b'{"env": {"t": 1, "h": [0, 2]}, "ts": "noon"}')
    assert "timestamp" in str(exc) and exc.partial == Decoded(None, ["t", "h"], [1, 2], [100.0] * 2, None)


def test_struct_layout_with_padding_scale_and_timestamp_field():
    m = PayloadMapping(format="struct", byte_order="big", timestamp="at", fields=[
        StructField("t", "int16", scale=0.1, offset=1.0), StructField(type="pad", size=2),
        StructField("n", "uint32"), StructField("at", "uint32")])
    d = one(m, "x", struct.pack(">hxxII", -215, 7, 1700000000), 3.0)
    assert d.points == ["t", "n"] and d.values[0] == pytest.approx(-20.5) and d.values[1] == 7
    assert d.timestamps == [1700000000.0] * 2 and d.quality is None
    exc = bad(m, "x", b"\x00\x01", 3.0)
    assert "take 12" in str(exc)
    assert exc.partial == Decoded(None, ["t", "n"], [None, None], [3.0] * 2, [BAD, BAD])   # visible, not dropped
    little = PayloadMapping(format="struct", fields=[StructField("a", "uint16"), StructField("b", "bool")])
    assert one(little, "x", b"\x01\x02\x01").values == [0x0201, True]


def test_adapter_formats_plug_in():
    @attrs.frozen
    class WithRaw(PayloadMapping):
        formats = PayloadMapping.formats + ("raw",)

    def raw(payload: bytes) -> list[Decoded]:
        if not payload:
            raise MalformedPayload("empty")
        return [Decoded("d", ["len"], [len(payload)], [1.0])]

    m = Mapper(WithRaw(format="raw"), decoders={"raw": raw})
    assert m.decode("t", b"abc", 0.0)[0].values == [3]
    with pytest.raises(MalformedPayload, match="empty"):
        m.decode("t", b"", 0.0)
    with pytest.raises(ValueError, match="no decoder"):
        Mapper(WithRaw(format="raw"))
    with pytest.raises(ValueError, match="format: expected one of"):
        PayloadMapping(format="raw")


# --- config errors name the key -------------------------------------------------------------------

@pytest.mark.parametrize("raw, message", [
    ({"format": "xml"}, "format: expected one of"),
    ({"timestamp_unit": "h"}, "timestamp_unit"),
    ({"byte_order": "middle"}, "byte_order"),
    ({"topic": "a/{x}/{y}", "device": "{zone}"}, r"device: .*unknown placeholder \{zone\}"),
    ({"point": "{client}"}, r"unknown placeholder \{client\}"),
    ({"topic": "a/b{x}"}, "must fill a whole level"),
    ({"topic": "a/#/b"}, "topic: .*last level"),
    ({"format": "json", "value": "a", "values": {"b": "c"}}, "not both"),
    ({"format": "json", "value": "a..["}, "value: bad JSON path"),
    ({"format": "struct"}, "fields: a struct payload needs"),
    ({"format": "struct", "fields": [{"name": "x"}, {"name": "x"}]}, "duplicate"),
    ({"format": "struct", "fields": [{"name": "x"}], "timestamp": "when"}, "timestamp: no field named 'when'"),
    ({"format": "struct", "fields": [{"name": "x"}, {"name": "t", "type": "uint32"}], "timestamp": "t",
      "timestamp_unit": "iso"}, "iso"),
    ({"format": "json", "fields": [{"name": "x"}]}, "fields: only used with format: struct"),
    ({"format": "struct", "fields": [{"name": "x", "type": "int17"}]}, "type: expected one of"),
    ({"format": "struct", "fields": [{"type": "pad", "size": 0}]}, "size"),
])
def test_config_errors_say_what_and_where(raw, message):
    with pytest.raises((ConfigError, ValueError), match=message) as info:
        structure(raw, PayloadMapping, path="entries[0].config.topics[2]")
    if isinstance(info.value, ConfigError):
        assert "entries[0].config.topics[2]" in str(info.value)
