"""Counter to delta against hand-computed sequences: wrap at the modulus, resets, implausible jumps."""

from pathlib import Path

import pytest

from sitegate.errors import ConfigError
from sitegate.loader import DevFolderSource, Loader
from sitegate.model import Batch, Quality
from sitegate.plugins import ProcessorContext
from sitegate.structure import structure

from plugins.counter.processor import Counter, CounterParams


def make(**kw):
    events = []
    return Counter(CounterParams(**kw), ProcessorContext("s", "energy", events.append, lambda: 0.0)), events


def deltas(proc, values, point="kwh", device="meter"):
    out = []
    for t, v in enumerate(values):
        b = proc.process(Batch(device, [point], [v], [t]))
        if b is not None:
            out.extend((ts, val) for _, val, ts, _ in b.rows())
    return out


def test_deltas_start_after_the_first_reading():
    c, _ = make()
    assert deltas(c, [100, 105, 105, 112.5]) == [(1, 5), (2, 0), (3, 7.5)]


def test_wrap_around_at_the_modulus():
    c, events = make(modulus=65536)
    # 65535 -> 0 is one step; 65535 -> 3 is four.
    assert deltas(c, [65530, 65535, 3, 10, 30000, 60000, 65535, 0]) == [
        (1, 5), (2, 4), (3, 7), (4, 29990), (5, 30000), (6, 5535), (7, 1)]
    assert (c.wraps, c.resets, events) == (2, 0, [])


def test_integer_counters_keep_integer_deltas_across_a_wrap_set_in_a_site_file():
    params = structure({"modulus": 65536}, CounterParams, path="through[0].counter")
    c = Counter(params, ProcessorContext("s", "energy", lambda e: None, lambda: 0.0))
    out = deltas(c, [65534, 2, 5])
    assert out == [(1, 4), (2, 3)] and all(type(v) is int for _, v in out)


def test_a_decrease_too_large_for_a_wrap_is_a_reset():
    c, events = make(modulus=65536)
    # 30100 -> 50 wrapped would be 35486 > 65536 / 2: the meter restarted and counted 50 since.
    assert deltas(c, [30000, 30100, 50, 60]) == [(1, 100), (2, 50), (3, 10)]
    assert (c.wraps, c.resets) == (0, 1)
    [e] = events
    assert (e.kind, e.device, e.point, e.data, e.ts) == ("counter.reset", "meter", "kwh",
                                                          {"previous": 30100, "value": 50}, 2)


def test_without_modulus_every_decrease_is_a_reset():
    c, _ = make()
    assert deltas(c, [1000, 1010, 5, 7]) == [(1, 10), (2, 5), (3, 2)]


def test_explicit_max_delta_decides_wrap_or_reset():
    c, _ = make(modulus=1000, max_delta=100)
    # 990 -> 20 wraps by 30 (<= 100); 60 -> 30 would wrap by 970: reset, delta 30;
    # 30 -> 130 is exactly max_delta: plausible.
    assert deltas(c, [950, 990, 20, 60, 30, 130]) == [(1, 40), (2, 30), (3, 40), (4, 30), (5, 100)]
    assert (c.wraps, c.resets) == (1, 1)


def test_an_implausible_jump_up_is_not_counted_and_counting_restarts_there():
    c, events = make(max_delta=100)
    assert deltas(c, [100, 150, 5000, 5010]) == [(1, 50), (3, 10)]
    assert c.implausible == 1 and events[0].kind == "counter.implausible"


def test_bad_readings_do_not_move_the_baseline_and_uncertain_ones_stay_uncertain():
    c, _ = make(suffix=".delta")
    bad, unc = int(Quality.BAD_TIMEOUT), int(Quality.UNCERTAIN)
    assert c.process(Batch("m", ["e", "e", "x"], [10, 0, "n/a"], [0, 1, 1], [0, bad, 0])) is None
    out = c.process(Batch("m", ["e", "e"], [12, 15], [2, 3], [unc, 0], "meters"))
    assert (out.source, list(out.rows())) == ("meters", [("e.delta", 2, 2, unc), ("e.delta", 3, 3, 0)])


def test_points_and_devices_are_independent():
    c, _ = make()
    assert c.process(Batch("a", ["x", "y"], [1, 100], [0, 0])) is None
    out = c.process(Batch("a", ["y", "x"], [110, 4], [1, 1]))
    assert list(out.rows()) == [("y", 10, 1, 0), ("x", 3, 1, 0)]
    assert c.process(Batch("b", ["x"], [50], [2])) is None


@pytest.mark.parametrize("raw, where", [
    ({"modulus": 0}, "modulus: expected a number > 0"),
    ({"modulus": 100, "max_delta": 100}, "max_delta (100.0) must be below modulus (100.0)"),
    ({"wrap": 10}, "counter.wrap: unknown key"),
])
def test_bad_params_say_what_and_where(raw, where):
    with pytest.raises(ConfigError) as err:
        structure(raw, CounterParams, path="routes[0].through[0].counter", file="site.yaml")
    assert where in str(err.value) and "site.yaml: routes[0].through[0].counter" in str(err.value)


def test_loads_as_an_integration_and_creates_from_site_params():
    integration = Loader(DevFolderSource(Path("plugins"), warn=False)).load_one("counter")
    ptype = integration.processor_types["counter"]
    params = structure({"modulus": 4294967296, "suffix": ".delta"}, ptype.params)
    proc = ptype.create(params, ProcessorContext("s", "r", lambda e: None, lambda: 0.0))
    assert proc.process(Batch("m", ["wh"], [4294967290], [0])) is None
    assert list(proc.process(Batch("m", ["wh"], [4], [1])).rows()) == [("wh.delta", 10, 1, 0)]


from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=200, deadline=None)
@given(modulus=st.sampled_from([256, 65536, 4294967296]), start=st.integers(0, 10**12),
       steps=st.lists(st.floats(0, 0.49), max_size=40))
def test_deltas_add_up_to_the_true_increase_across_any_number_of_wraps(modulus, start, steps):
    # A meter counting up by less than half its range between readings: every decrease is a wrap.
    c, events = make(modulus=modulus)
    total = start
    observed = [total % modulus]
    for s in steps:
        total += int(s * modulus)
        observed.append(total % modulus)
    assert sum(v for _, v in deltas(c, observed)) == total - start
    assert c.resets == 0 and events == []


def test_nan_is_not_a_count_and_keeps_the_baseline():
    nan = float("nan")
    c, _ = make()
    assert deltas(c, [nan, 10, nan, 15]) == [(3, 5)]


def test_messages_show_readable_numbers_and_the_data_keeps_the_exact_ones():
    c, events = make()
    for t, v in enumerate([30100.100000000002, 50]):
        c.process(Batch("meter", ["kwh"], [v], [float(t)]))
    (e,) = events
    assert e.message == "meter/kwh went from 30100.1 to 50: counted as a reset"
    assert e.data == {"previous": 30100.100000000002, "value": 50}
