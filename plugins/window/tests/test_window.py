"""Window aggregates against hand-computed expectations: boundaries, grace, late readings, quality."""

from pathlib import Path

import pytest

from sitegate.errors import ConfigError
from sitegate.loader import DevFolderSource, Loader
from sitegate.model import Batch, Quality
from sitegate.plugins import ProcessorContext
from sitegate.structure import structure

from plugins.window.processor import STATS, Window, WindowParams


def feed(w, device, point, seq):
    """One reading per batch; returns every (point, value, ts, quality) emitted."""
    out = []
    for item in seq:
        t, v = item[0], item[1]
        q = None if len(item) < 3 else [item[2]]
        b = w.process(Batch(device, [point], [v], [t], q))
        if b is not None:
            assert b.device == device
            out.extend(b.rows())
    return out


def rows(batches):
    return [(b.device, *r) for b in batches for r in b.rows()]


def test_reading_exactly_on_a_boundary_opens_the_next_window():
    w = Window(WindowParams(every=60, keep=["min", "max", "avg", "count"], grace=0))
    seq = [(0, 10.0), (30, 20.0), (59.999, 30.0), (60, 40.0)]
    assert feed(w, "m", "temp", seq) == [
        ("temp.min", 10.0, 60, 0), ("temp.max", 30.0, 60, 0), ("temp.avg", 20.0, 60, 0), ("temp.count", 3, 60, 0)]
    # 40.0 at t=60 sits alone in [60, 120); it leaves when the window ends.
    assert rows(w.flush(120)) == [
        ("m", "temp.min", 40.0, 120, 0), ("m", "temp.max", 40.0, 120, 0),
        ("m", "temp.avg", 40.0, 120, 0), ("m", "temp.count", 1, 120, 0)]


def test_boundary_rule_holds_for_sub_second_windows_despite_float_division():
    w = Window(WindowParams(every=0.1, keep=["count"], grace=0))
    # 4.3 / 0.1 == 42.99999999999999 in floats, yet 4.3 == 43 * 0.1: it must open window 43.
    assert feed(w, "m", "p", [(4.25, 1.0), (4.3, 2.0), (4.31, 3.0)]) == [("p.count", 1, 4.3, 0)]
    # 1.7 / 0.1 == 17.0 but 17 * 0.1 > 1.7: 1.7 opens window 16, so 1.65 after it is not late.
    w = Window(WindowParams(every=0.1, keep=["count"], grace=0))
    assert feed(w, "m", "p", [(1.7, 1.0), (1.65, 2.0)]) == [] and w.late == 0
    assert rows(w.flush(2.0)) == [("m", "p.count", 2, 17 * 0.1, 0)]


def test_every_stat_with_out_of_order_readings():
    w = Window(WindowParams(every=60, keep=list(STATS), grace=1))
    # t=120 arrives after t=125 and t=130: first is by time, not by arrival.
    assert feed(w, "m", "p", [(125, 5.0), (130, 1.0), (120, 3.0), (170, 9.0)]) == []
    assert w.flush(180.9) == []                      # end 180 + grace 1 not reached
    assert rows(w.flush(181)) == [
        ("m", "p.min", 1.0, 180, 0), ("m", "p.max", 9.0, 180, 0), ("m", "p.avg", 4.5, 180, 0),
        ("m", "p.sum", 18.0, 180, 0), ("m", "p.count", 4, 180, 0), ("m", "p.first", 3.0, 180, 0),
        ("m", "p.last", 9.0, 180, 0)]


def test_a_reading_for_a_closed_window_is_late_and_never_reopens_it():
    w = Window(WindowParams(every=60, keep=["sum"], grace=1))
    feed(w, "m", "p", [(100, 1.0)])
    assert rows(w.flush(121)) == [("m", "p.sum", 1.0, 120, 0)]
    assert feed(w, "m", "p", [(119, 2.0)]) == []     # straggler after the close: dropped
    assert w.late == 1
    assert w.flush(1000) == []                       # no second row for [60, 120)
    assert feed(w, "m", "p", [(185, 4.0), (240, 0.0)]) == [("p.sum", 4.0, 240, 0)]


def test_windows_without_readings_emit_nothing():
    w = Window(WindowParams(every=60, keep=["count"], grace=0))
    assert feed(w, "m", "p", [(0, 1.0), (200, 1.0)]) == [("p.count", 1, 60, 0)]
    assert rows(w.flush(239)) == []
    assert rows(w.flush(240)) == [("m", "p.count", 1, 240, 0)]


def test_windows_are_aligned_to_the_epoch_not_to_the_first_reading():
    w = Window(WindowParams(every=3600, keep=["first"], grace=0))
    feed(w, "m", "p", [(1_700_000_123.5, 7)])
    # 1_700_000_123.5 lies in [1_699_999_200, 1_700_002_800): whole hours since 1970-01-01 UTC.
    assert rows(w.flush(1_700_002_799.9)) == []
    assert rows(w.flush(1_700_002_800)) == [("m", "p.first", 7, 1_700_002_800, 0)]


def test_bad_readings_are_left_out_and_uncertain_ones_mark_the_aggregate():
    w = Window(WindowParams(every=10, keep=["avg", "count"], grace=0))
    bad, unc = int(Quality.BAD_COMM), int(Quality.UNCERTAIN)
    feed(w, "m", "a", [(0, 1.0), (1, 99.0, bad), (2, 3.0)])
    feed(w, "m", "b", [(0, 1.0), (1, 5.0, unc)])
    feed(w, "m", "c", [(0, 1.0, bad)])                 # nothing good: no row at all
    [b] = w.flush(10)
    assert list(b.rows()) == [("a.avg", 2.0, 10, 0), ("a.count", 2, 10, 0),
                              ("b.avg", 3.0, 10, unc), ("b.count", 2, 10, unc)]
    assert w.skipped == 2


def test_non_numeric_values_are_skipped():
    w = Window(WindowParams(every=10, keep=["max", "count"], grace=0))
    feed(w, "m", "p", [(0, "on"), (1, 2), (2, "off"), (3, 4.5), (4, None)])
    assert rows(w.flush(10)) == [("m", "p.max", 4.5, 10, 0), ("m", "p.count", 2, 10, 0)]
    assert w.skipped == 3


def test_one_batch_closes_windows_of_several_points_into_one_output_batch():
    w = Window(WindowParams(every=10, keep=["last"], grace=0))
    assert w.process(Batch("d1", ["x", "y", "x"], [1, 2, 3], [0, 0, 5], source="sim")) is None
    w.process(Batch("d2", ["x"], [100], [0]))
    out = w.process(Batch("d1", ["y", "x"], [4, 5], [10, 12], source="sim"))
    assert (out.device, out.source, list(out.rows())) == ("d1", "sim", [("y.last", 2, 10, 0), ("x.last", 3, 10, 0)])
    assert rows(w.flush(10)) == [("d2", "x.last", 100, 10, 0)]


@pytest.mark.parametrize("raw, where", [
    ({}, "required key 'every' is missing"),
    ({"every": 0}, "every: expected a positive duration"),
    ({"every": "1m", "keep": ["avg", "median"]}, "keep: expected stats from min, max, avg"),
    ({"every": "1m", "keep": []}, "keep: expected stats from"),
])
def test_bad_params_say_what_and_where(raw, where):
    with pytest.raises(ConfigError) as err:
        structure(raw, WindowParams, path="routes[1].through[0].window", file="site.yaml")
    assert where in str(err.value) and "site.yaml: routes[1].through[0].window" in str(err.value)


def test_loads_as_an_integration_and_creates_from_site_params():
    integration = Loader(DevFolderSource(Path("plugins"), warn=False)).load_one("window")
    ptype = integration.processor_types["window"]
    params = structure({"every": "1m", "keep": ["min", "max", "avg"]}, ptype.params)
    assert params.grace == 1.0
    proc = ptype.create(params, ProcessorContext("s", "r", lambda e: None, lambda: 0.0))
    assert proc.process(Batch("a", ["t"], [2.0], [0])) is None
    out = proc.process(Batch("a", ["t"], [4.0], [60]))
    assert list(out.rows()) == [("t.min", 2.0, 60, 0), ("t.max", 2.0, 60, 0), ("t.avg", 2.0, 60, 0)]


from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=150, deadline=None)
@given(every=st.sampled_from([1.0, 7.5, 60.0]),
       readings=st.lists(st.tuples(st.integers(0, 4000), st.integers(-50, 50)), max_size=60))
def test_aggregates_match_a_brute_force_grouping(every, readings):
    # Timestamps on a quarter-second grid and windows of whole/half seconds: no float ambiguity,
    # so floor(t / every) is the window and the processor must agree with it exactly.
    readings = sorted((q / 4, float(v)) for q, v in readings)
    w = Window(WindowParams(every=every, keep=["count", "sum", "min", "max", "first", "last"], grace=0))
    got = feed(w, "m", "p", readings) + [r[1:] for r in rows(w.flush(1e9))]
    groups = {}
    for t, v in readings:
        groups.setdefault((t // every + 1) * every, []).append(v)
    want = []
    for end, vs in sorted(groups.items()):
        want += [("p.count", len(vs), end, 0), ("p.sum", sum(vs), end, 0), ("p.min", min(vs), end, 0),
                 ("p.max", max(vs), end, 0), ("p.first", vs[0], end, 0), ("p.last", vs[-1], end, 0)]
    assert got == want


def test_nan_readings_are_skipped_not_aggregated():
    nan = float("nan")
    w = Window(WindowParams(every=10, keep=["avg", "min", "count"], grace=0))
    feed(w, "m", "p", [(0, nan), (1, 2.0), (2, nan), (3, 4.0)])
    assert rows(w.flush(10)) == [("m", "p.avg", 3.0, 10, 0), ("m", "p.min", 2.0, 10, 0), ("m", "p.count", 2, 10, 0)]
    assert w.skipped == 2
