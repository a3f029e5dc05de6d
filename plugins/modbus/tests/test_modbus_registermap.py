"""Register map decoding, encoding and read planning, against hand-computed registers."""

from __future__ import annotations

import math

import pytest

from plugins.modbus.registermap import (
    DataType, Gap, Point, Table, WordOrder, decode, decoder, encode, group_by_interval, plan_reads, set_bit,
)
from sitegate.errors import ConfigError
from sitegate.structure import structure

# (type, order, value, registers as the device holds them), computed by hand from the IEEE 754 /
# two's complement bit patterns: 0x12345678, 1.0f = 0x3F800000, 1.0 = 0x3FF0000000000000, ...
CASES = [
    (DataType.INT16, WordOrder.ABCD, -2, [0xFFFE]),
    (DataType.INT16, WordOrder.BADC, -2, [0xFEFF]),
    (DataType.INT16, WordOrder.ABCD, 0x1234, [0x1234]),
    (DataType.UINT16, WordOrder.ABCD, 65535, [0xFFFF]),
    (DataType.UINT16, WordOrder.BADC, 0x1234, [0x3412]),
    (DataType.UINT16, WordOrder.CDAB, 0x1234, [0x1234]),     # one word: word order changes nothing
    (DataType.UINT16, WordOrder.DCBA, 0x1234, [0x3412]),
    (DataType.INT32, WordOrder.ABCD, 0x12345678, [0x1234, 0x5678]),
    (DataType.INT32, WordOrder.CDAB, 0x12345678, [0x5678, 0x1234]),
    (DataType.INT32, WordOrder.BADC, 0x12345678, [0x3412, 0x7856]),
    (DataType.INT32, WordOrder.DCBA, 0x12345678, [0x7856, 0x3412]),
    (DataType.INT32, WordOrder.ABCD, -2, [0xFFFF, 0xFFFE]),
    (DataType.INT32, WordOrder.CDAB, -2, [0xFFFE, 0xFFFF]),
    (DataType.UINT32, WordOrder.ABCD, 4_000_000_000, [0xEE6B, 0x2800]),
    (DataType.UINT32, WordOrder.CDAB, 4_000_000_000, [0x2800, 0xEE6B]),
    (DataType.UINT32, WordOrder.BADC, 4_000_000_000, [0x6BEE, 0x0028]),
    (DataType.UINT32, WordOrder.DCBA, 4_000_000_000, [0x0028, 0x6BEE]),
    (DataType.INT64, WordOrder.ABCD, 0x0102030405060708, [0x0102, 0x0304, 0x0506, 0x0708]),
    (DataType.INT64, WordOrder.CDAB, 0x0102030405060708, [0x0708, 0x0506, 0x0304, 0x0102]),
    (DataType.INT64, WordOrder.BADC, 0x0102030405060708, [0x0201, 0x0403, 0x0605, 0x0807]),
    (DataType.INT64, WordOrder.DCBA, 0x0102030405060708, [0x0807, 0x0605, 0x0403, 0x0201]),
    (DataType.INT64, WordOrder.ABCD, -1, [0xFFFF] * 4),
    (DataType.UINT64, WordOrder.ABCD, (1 << 63) + 1, [0x8000, 0, 0, 1]),
    (DataType.UINT64, WordOrder.CDAB, (1 << 63) + 1, [1, 0, 0, 0x8000]),
    (DataType.FLOAT32, WordOrder.ABCD, 1.0, [0x3F80, 0x0000]),
    (DataType.FLOAT32, WordOrder.CDAB, 1.0, [0x0000, 0x3F80]),
    (DataType.FLOAT32, WordOrder.BADC, 1.0, [0x803F, 0x0000]),
    (DataType.FLOAT32, WordOrder.DCBA, 1.0, [0x0000, 0x803F]),
    (DataType.FLOAT32, WordOrder.ABCD, -2.5, [0xC020, 0x0000]),
    (DataType.FLOAT64, WordOrder.ABCD, 1.0, [0x3FF0, 0, 0, 0]),
    (DataType.FLOAT64, WordOrder.CDAB, 1.0, [0, 0, 0, 0x3FF0]),
    (DataType.FLOAT64, WordOrder.BADC, 1.0, [0xF03F, 0, 0, 0]),
    (DataType.FLOAT64, WordOrder.DCBA, 1.0, [0, 0, 0, 0xF03F]),
    (DataType.FLOAT64, WordOrder.ABCD, -0.5, [0xBFE0, 0, 0, 0]),
]


@pytest.mark.parametrize("dtype,order,value,regs", CASES, ids=lambda x: str(x))
def test_numeric_types_decode_and_encode_in_every_order(dtype, order, value, regs):
    p = Point("p", 0, type=dtype, order=order, writable=True)
    assert decode(p, regs) == value
    assert encode(p, value) == regs


def test_float32_decodes_to_the_nearest_single_precision_value():
    # 123.456f is 0x42F6E979; as a double it is 123.45600128173828
    p = Point("p", 0, type=DataType.FLOAT32, order=WordOrder.CDAB)
    assert decode(p, [0xE979, 0x42F6]) == pytest.approx(123.456, abs=1e-5)
    assert encode(p, 123.456) == [0xE979, 0x42F6]


@pytest.mark.parametrize("order,regs", [
    (WordOrder.ABCD, [0x4142, 0x3132, 0x0000]),
    (WordOrder.BADC, [0x4241, 0x3231, 0x0000]),
    (WordOrder.CDAB, [0x0000, 0x3132, 0x4142]),
    (WordOrder.DCBA, [0x0000, 0x3231, 0x4241]),
])
def test_strings_strip_padding_and_follow_the_order(order, regs):
    p = Point("serial", 0, type=DataType.STRING, length=3, order=order, writable=True)
    assert decode(p, regs) == "AB12"
    assert encode(p, "AB12") == regs


def test_string_that_does_not_fit_is_refused():
    p = Point("s", 0, type=DataType.STRING, length=1)
    with pytest.raises(ValueError, match="3 characters do not fit in 1 registers"):
        encode(p, "abc")


def test_bool_is_one_bit_of_a_register():
    p = Point("alarm", 7, type=DataType.BOOL, bit=3)
    assert decode(p, [0x0008]) is True
    assert decode(p, [0xFFF7]) is False
    assert set_bit(p, 0xFFF7, True) == 0xFFFF
    assert set_bit(p, 0x00FF, False) == 0x00F7
    hi = Point("hi", 7, type=DataType.BOOL, bit=15)
    assert decode(hi, [0x8000]) is True


def test_coils_decode_to_bools():
    p = Point("relay", 4, table=Table.COIL, type=DataType.BOOL, writable=True)
    assert decode(p, [True]) is True
    assert encode(p, False) == [False]
    assert encode(p, 1) == [True]
    with pytest.raises(ValueError, match="expected true or false"):
        encode(p, "on")


def test_scale_and_offset_apply_on_read_and_reverse_on_write():
    p = Point("temp", 0, type=DataType.INT16, scale=0.1, offset=-40.0, writable=True)
    assert decode(p, [650]) == pytest.approx(25.0)       # 650 * 0.1 - 40
    assert encode(p, 25.0) == [650]
    assert encode(p, -45.0) == [0xFFCE]                   # raw -50
    v = Point("v", 0, type=DataType.UINT16, scale=0.1)
    assert decode(v, [2345]) == pytest.approx(234.5)


def test_out_of_range_writes_say_why():
    p = Point("sp", 0, type=DataType.UINT16, scale=0.1, writable=True)
    with pytest.raises(ValueError, match=r"7000 is out of range for uint16 \(raw 70000, allowed 0..65535\)"):
        encode(p, 7000)
    with pytest.raises(ValueError, match="out of range for int16"):
        encode(Point("x", 0, type=DataType.INT16), -40000)
    with pytest.raises(ValueError, match="expected a number"):
        encode(Point("x", 0, type=DataType.INT16), "12")
    with pytest.raises(ValueError, match="out of range for float32"):
        encode(Point("x", 0, type=DataType.FLOAT32), 1e39)
    assert math.isnan(decode(Point("f", 0, type=DataType.FLOAT32), encode(Point("f", 0, type=DataType.FLOAT32), math.nan)))


def test_config_errors_name_the_field_and_the_choices():
    with pytest.raises(ConfigError) as e:
        structure({"name": "x", "address": 1, "type": "int17"}, Point, path="entries[0].config.points[5]")
    assert "entries[0].config.points[5].type: expected one of bool, int16, uint16" in str(e.value)
    assert "got 'int17'" in str(e.value)
    with pytest.raises(ConfigError, match="order: expected one of ABCD, CDAB, BADC, DCBA, got 'ABDC'"):
        structure({"name": "x", "address": 1, "order": "ABDC"}, Point, path="points[0]")
    with pytest.raises(ConfigError, match="a bool in a holding register needs bit"):
        structure({"name": "x", "address": 1, "type": "bool"}, Point)
    with pytest.raises(ConfigError, match="input registers are read-only"):
        structure({"name": "x", "address": 1, "table": "input", "writable": True}, Point)
    with pytest.raises(ConfigError, match="a string needs its length"):
        structure({"name": "x", "address": 1, "type": "string"}, Point)
    p = structure({"name": "x", "address": 1, "table": "Holding", "type": "FLOAT32", "order": "cdab",
                   "poll": "250ms"}, Point)
    assert (p.table, p.type, p.order, float(p.poll)) == (Table.HOLDING, DataType.FLOAT32, WordOrder.CDAB, 0.25)


# --- planning ---------------------------------------------------------------------

def _hr(name, address, dtype=DataType.UINT16, **kw):
    return Point(name, address, type=dtype, **kw)


def test_nearby_points_merge_into_one_read_with_offsets():
    pts = [_hr("a", 0), _hr("b", 1, DataType.FLOAT32), _hr("c", 10)]
    (req,) = plan_reads(pts, max_gap=16)
    assert (req.table, req.address, req.count) == (Table.HOLDING, 0, 11)
    assert [(p.name, off) for p, off in req.points] == [("a", 0), ("b", 1), ("c", 10)]


def test_points_further_apart_than_max_gap_are_read_separately():
    pts = [_hr("a", 0), _hr("b", 1, DataType.FLOAT32), _hr("c", 10)]
    reqs = plan_reads(pts, max_gap=6)           # 7 unused registers (3..9) between b and c
    assert [(r.address, r.count) for r in reqs] == [(0, 3), (10, 1)]
    assert [(r.address, r.count) for r in plan_reads(pts, max_gap=7)] == [(0, 11)]


def test_a_declared_gap_is_never_bridged():
    pts = [_hr("a", 0), _hr("b", 10)]
    reqs = plan_reads(pts, max_gap=50, gaps=[Gap(Table.HOLDING, 5, 6)])
    assert [(r.address, r.count) for r in reqs] == [(0, 1), (10, 1)]
    # a gap in another table does not matter
    assert len(plan_reads(pts, max_gap=50, gaps=[Gap(Table.INPUT, 5, 6)])) == 1
    with pytest.raises(ValueError, match="point 'b': holding 10..10 lies in a gap"):
        plan_reads(pts, gaps=[Gap(Table.HOLDING, 8, 12)])


def test_reads_are_split_at_125_registers_and_2000_bits():
    regs = [_hr(f"r{i}", i) for i in range(200)]
    assert [(r.address, r.count) for r in plan_reads(regs)] == [(0, 125), (125, 75)]
    coils = [Point(f"c{i}", i, table=Table.COIL, type=DataType.BOOL) for i in range(3000)]
    assert [(r.address, r.count) for r in plan_reads(coils)] == [(0, 2000), (2000, 1000)]
    # a 4-register value is never split across two reads
    wide = [_hr(f"q{i}", 4 * i, DataType.UINT64) for i in range(40)]
    reqs = plan_reads(wide)
    assert [(r.address, r.count) for r in reqs] == [(0, 124), (124, 36)]
    assert plan_reads(wide, max_registers=10)[0].count == 8


def test_tables_are_planned_apart_and_bits_share_their_register():
    pts = [
        _hr("status", 5), Point("run", 5, type=DataType.BOOL, bit=0), Point("fault", 5, type=DataType.BOOL, bit=7),
        Point("in", 5, table=Table.INPUT), Point("coil", 5, table=Table.COIL, type=DataType.BOOL),
        Point("di", 5, table=Table.DISCRETE, type=DataType.BOOL),
    ]
    reqs = plan_reads(pts)
    assert [(r.table, r.address, r.count, len(r.points)) for r in reqs] == [
        (Table.HOLDING, 5, 1, 3), (Table.INPUT, 5, 1, 1), (Table.COIL, 5, 1, 1), (Table.DISCRETE, 5, 1, 1)]
    assert [r.table.read_function for r in reqs] == [3, 4, 1, 2]


def test_points_are_grouped_by_poll_interval():
    pts = [_hr("a", 0), _hr("b", 1, poll=0.1), _hr("c", 2, poll=5), _hr("d", 3, poll=0.1)]
    groups = group_by_interval(pts, default=1.0)
    assert {k: [p.name for p in v] for k, v in groups.items()} == {0.1: ["b", "d"], 1.0: ["a"], 5.0: ["c"]}


def test_the_energy_meter_of_the_docs_costs_the_reads_the_docs_say():
    import re
    from pathlib import Path

    import yaml

    from plugins.modbus.config import ModbusConfig
    doc = (Path(__file__).parents[3] / "docs" / "modbus.md").read_text()
    block = re.search(r"## Worked example.*?```yaml[^\n]*\n(.*?)```", doc, re.S).group(1)
    cfg = structure(yaml.safe_load(block)["entries"][0]["config"], ModbusConfig)
    (dev,) = cfg.device_configs()
    plans = {k: [(r.table.value, r.address, r.count) for r in plan_reads(v, max_gap=dev.max_gap)]
             for k, v in group_by_interval(dev.points, dev.poll).items()}
    assert plans == {1.0: [("input", 0, 8), ("input", 52, 20)], 15.0: [("input", 342, 2)],
                     60.0: [("holding", 2, 2)]}
    assert [(r.address, r.count) for r in plan_reads(group_by_interval(dev.points, 1.0)[1.0], max_gap=44)] == [(0, 72)]
    # the hand-decoded values of the docs
    assert decode(Point("u", 0, table=Table.INPUT, type=DataType.FLOAT32), [0x4366, 0x8000]) == 230.5
    e = Point("e", 0, type=DataType.INT32, order=WordOrder.CDAB, scale=0.001)
    assert decode(e, [0x5DC0, 0x0001]) == pytest.approx(89.536)


# --- round trips (property tests) ------------------------------------------------

from hypothesis import given, strategies as st  # noqa: E402

_INTS = {DataType.INT16: 16, DataType.INT32: 32, DataType.INT64: 64}
_UINTS = {DataType.UINT16: 16, DataType.UINT32: 32, DataType.UINT64: 64}


@st.composite
def typed_values(draw):
    dtype = draw(st.sampled_from([t for t in DataType if t not in (DataType.BOOL, DataType.STRING)]))
    order = draw(st.sampled_from(list(WordOrder)))
    if dtype in _INTS:
        bits = _INTS[dtype]
        value = draw(st.integers(-(1 << (bits - 1)), (1 << (bits - 1)) - 1))
    elif dtype in _UINTS:
        value = draw(st.integers(0, (1 << _UINTS[dtype]) - 1))
    elif dtype is DataType.FLOAT32:
        value = draw(st.floats(width=32, allow_nan=False))
    else:
        value = draw(st.floats(allow_nan=False))
    return Point("p", 0, type=dtype, order=order, writable=True), value


@given(typed_values())
def test_every_type_and_order_round_trips(pv):
    point, value = pv
    regs = encode(point, value)
    assert len(regs) == point.width and all(0 <= r <= 0xFFFF for r in regs)
    assert decode(point, regs) == value
    # the compiled decoder reads the same value from inside a longer read
    assert decoder(point)([7, 7, *regs, 7], 2) == value


@given(st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=4), st.sampled_from(list(WordOrder)))
def test_any_registers_decode_without_crashing_and_re_encode_to_themselves(regs, order):
    dtype = {1: DataType.UINT16, 2: DataType.UINT32, 3: DataType.UINT16, 4: DataType.UINT64}[len(regs)]
    regs = regs[:Point("p", 0, type=dtype).width]
    p = Point("p", 0, type=dtype, order=order)
    assert encode(p, decode(p, regs)) == regs
