"""Deadband against hand-computed sequences: absolute, percent, max_silence, quality and types."""

from pathlib import Path

import pytest

from sitegate.errors import ConfigError
from sitegate.loader import DevFolderSource, Loader
from sitegate.model import Batch, Quality
from sitegate.plugins import ProcessorContext
from sitegate.structure import structure

from plugins.deadband.processor import Deadband, DeadbandParams


def feed(proc, device, point, seq):
    """Feed (t, value[, quality]) one reading per batch; return the (t, value) pairs passed on."""
    out = []
    for item in seq:
        t, v = item[0], item[1]
        q = None if len(item) < 3 else [item[2]]
        b = proc.process(Batch(device, [point], [v], [t], q))
        if b is not None:
            out.extend((ts, val) for _, val, ts, _ in b.rows())
    return out


def test_absolute_deadband_passes_moves_of_at_least_abs():
    d = Deadband(DeadbandParams(abs=0.5))
    seq = [(0, 10.0), (1, 10.3), (2, 10.5), (3, 10.9), (4, 11.0), (5, 9.9), (6, 9.5)]
    # 10.3 and 10.9 stay within 0.5 of the last reported value; 9.5 is 0.4 below 9.9.
    assert feed(d, "m", "temp", seq) == [(0, 10.0), (2, 10.5), (4, 11.0), (5, 9.9)]
    assert (d.passed, d.suppressed) == (4, 3)


def test_abs_zero_reports_every_change_and_nothing_else():
    d = Deadband(DeadbandParams(abs=0))
    assert feed(d, "m", "x", [(0, 1), (1, 1), (2, 2), (3, 2), (4, 1)]) == [(0, 1), (2, 2), (4, 1)]


def test_percent_deadband_is_relative_to_last_reported_value():
    d = Deadband(DeadbandParams(percent=10))
    seq = [(0, 100.0), (1, 105.0), (2, 110.0), (3, 120.0), (4, 121.0), (5, 109.0)]
    # 110 is 10 % of 100 away; then 10 % of 110 is 11: 120 (10) stays, 121 (11) passes,
    # 109 is 12 below 121 and 10 % of 121 is 12.1: suppressed.
    assert feed(d, "m", "p", seq) == [(0, 100.0), (2, 110.0), (4, 121.0)]


def test_percent_of_zero_reports_any_change():
    d = Deadband(DeadbandParams(percent=5))
    assert feed(d, "m", "p", [(0, 0.0), (1, 0.0), (2, 0.001)]) == [(0, 0.0), (2, 0.001)]


def test_abs_and_percent_pass_when_either_is_reached():
    d = Deadband(DeadbandParams(abs=5, percent=1))
    # 1 % of 200 is 2: 201 reaches neither, 202 passes by percent (abs 5 is never reached).
    assert feed(d, "m", "p", [(0, 200.0), (1, 201.0), (2, 202.0), (3, 202.5)]) == [(0, 200.0), (2, 202.0)]
    d = Deadband(DeadbandParams(abs=5, percent=50))      # 50 % of 20 is 10: abs 5 decides
    assert feed(d, "m", "p", [(0, 20.0), (1, 24.0), (2, 25.0)]) == [(0, 20.0), (2, 25.0)]


def test_max_silence_reports_the_next_reading_after_the_silence():
    d = Deadband(DeadbandParams(abs=1, max_silence=60))
    seq = [(0, 10.0), (30, 10.1), (59.9, 10.2), (60, 10.2), (90, 10.3), (120, 10.3)]
    assert feed(d, "m", "p", seq) == [(0, 10.0), (60, 10.2), (120, 10.3)]


def test_flush_re_reports_the_latest_suppressed_reading_once():
    d = Deadband(DeadbandParams(abs=1, max_silence=60))
    assert feed(d, "m", "p", [(0, 10.0), (10, 10.1), (20, 10.2)]) == [(0, 10.0)]
    assert d.flush(59.9) == []
    [b] = d.flush(60.0)
    assert (b.device, list(b.rows())) == ("m", [("p", 10.2, 20, 0)])
    assert d.flush(200.0) == []          # nothing new since: no invented readings
    # Silence restarts at the re-report (60): 100 is 40 s later, so it stays suppressed.
    assert feed(d, "m", "p", [(100, 10.3)]) == []
    assert d.flush(119.9) == []
    [b] = d.flush(120.0)
    assert list(b.rows()) == [("p", 10.3, 100, 0)]


def test_flush_without_max_silence_emits_nothing():
    d = Deadband(DeadbandParams(abs=1))
    feed(d, "m", "p", [(0, 1.0), (1, 1.1)])
    assert d.flush(1e9) == []


def test_quality_change_always_passes():
    d = Deadband(DeadbandParams(abs=1))
    bad = int(Quality.BAD_COMM)
    seq = [(0, 10.0, 0), (1, 10.0, bad), (2, 10.0, bad), (3, 10.0, 0)]
    assert feed(d, "m", "p", seq) == [(0, 10.0), (1, 10.0), (3, 10.0)]


def test_non_numeric_values_pass_on_change():
    d = Deadband(DeadbandParams(abs=1))
    seq = [(0, "on"), (1, "on"), (2, "off"), (3, None), (4, None), (5, True), (6, True), (7, False)]
    assert feed(d, "m", "s", seq) == [(0, "on"), (2, "off"), (3, None), (5, True), (7, False)]


def test_state_is_per_device_and_point_within_one_batch():
    d = Deadband(DeadbandParams(abs=1))
    b = d.process(Batch("a", ["x", "y", "x", "y"], [1.0, 5.0, 1.5, 7.0], [0, 0, 1, 1]))
    assert list(b.rows()) == [("x", 1.0, 0, 0), ("y", 5.0, 0, 0), ("y", 7.0, 1, 0)]
    b = d.process(Batch("b", ["x"], [1.4], [2]))   # another device: its own first reading
    assert list(b.rows()) == [("x", 1.4, 2, 0)]


def test_a_batch_that_passes_whole_is_returned_as_is_and_none_when_empty():
    d = Deadband(DeadbandParams(abs=1))
    b = Batch("a", ["x", "y"], [1.0, 2.0], [0, 0])
    assert d.process(b) is b
    assert d.process(Batch("a", ["x", "y"], [1.1, 2.1], [1, 1])) is None


@pytest.mark.parametrize("raw, where", [
    ({"max_silence": "60s"}, "give abs, percent or both"),
    ({"abs": -1}, "abs: expected a number >= 0"),
    ({"abs": 1, "silence": "1m"}, "deadband.silence: unknown key"),
    ({"abs": 1, "max_silence": "soon"}, "deadband.max_silence: expected a duration"),
])
def test_bad_params_say_what_and_where(raw, where):
    with pytest.raises(ConfigError) as err:
        structure(raw, DeadbandParams, path="routes[0].through[0].deadband", file="site.yaml")
    assert where in str(err.value) and "site.yaml: routes[0].through[0].deadband" in str(err.value)


def test_loads_as_an_integration_and_creates_from_site_params():
    integration = Loader(DevFolderSource(Path("plugins"), warn=False)).load_one("deadband")
    ptype = integration.processor_types["deadband"]
    params = structure({"abs": 0.5, "max_silence": "60s"}, ptype.params)
    ctx = ProcessorContext("s", "r", lambda e: None, lambda: 0.0)
    proc = ptype.create(params, ctx)
    assert proc.process(Batch("a", ["x"], [1.0], [0])) is not None
    assert proc.process(Batch("a", ["x"], [1.2], [1])) is None
    assert [list(b.rows()) for b in proc.flush(61.0)] == [[("x", 1.2, 1, 0)]]


from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=200, deadline=None)
@given(band=st.sampled_from([0.0, 0.5, 2.0]), values=st.lists(st.integers(-40, 40), min_size=1, max_size=50))
def test_every_reading_is_reported_or_within_the_band_of_the_last_report(band, values):
    d = Deadband(DeadbandParams(abs=band))
    seq = [(t, v / 4) for t, v in enumerate(values)]      # quarter steps: exact in floats
    reported = dict(feed(d, "m", "p", seq))
    last = None
    for t, v in seq:
        if t in reported:
            assert last is None or abs(v - last) >= band and v != last
            last = v
        else:
            assert abs(v - last) < band or v == last


def test_re_reports_of_points_on_different_schedules_all_come_on_time():
    d = Deadband(DeadbandParams(abs=1, max_silence=60))
    d.process(Batch("m", ["a"], [1.0], [0]))
    d.process(Batch("m", ["b"], [1.0], [30]))
    d.process(Batch("m", ["a", "b"], [1.1, 1.1], [10, 40]))
    assert [list(b.rows()) for b in d.flush(60)] == [[("a", 1.1, 10, 0)]]
    assert d.flush(89.9) == []
    assert [list(b.rows()) for b in d.flush(90)] == [[("b", 1.1, 40, 0)]]
    assert d.flush(200) == []
    d.process(Batch("m", ["a"], [1.2], [100]))          # 40 s after a's re-report at 60: suppressed
    assert d.flush(119.9) == []
    assert [list(b.rows()) for b in d.flush(120)] == [[("a", 1.2, 100, 0)]]
