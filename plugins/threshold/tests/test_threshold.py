"""Threshold alerts against hand-computed sequences: hysteresis, cooldown, below, globs, quality."""

from pathlib import Path

import pytest

from sitegate.errors import ConfigError
from sitegate.loader import DevFolderSource, Loader
from sitegate.model import Batch, Quality, Severity
from sitegate.plugins import ProcessorContext
from sitegate.structure import structure

from plugins.threshold.processor import Levels, Threshold, ThresholdParams


def make(**kw):
    events = []
    proc = Threshold(ThresholdParams(**kw), ProcessorContext("site", "hot-route", events.append, lambda: 0.0))
    return proc, events


def feed(proc, seq, device="m", point="temp"):
    for t, v in seq:
        b = Batch(device, [point], [v], [t])
        assert proc.process(b) is b          # readings always pass through, untouched


def levels(events):
    return [(e.ts, e.data["level"], e.data["value"]) for e in events]


def test_hysteresis_sequence_above():
    proc, events = make(above=Levels(warning=35, critical=45), hysteresis=1)
    feed(proc, [(0, 30), (1, 35), (2, 35.5), (3, 34.5), (4, 34), (5, 46), (6, 44.5), (7, 44), (8, 33)])
    # 35 is not above 35; 34.5 is within 1 of 35 so warning holds; 34 clears; 44.5 holds critical;
    # 44 (= 45 - 1) leaves critical but is still far above 35 - 1: warning.
    assert levels(events) == [(2, "warning", 35.5), (4, "normal", 34), (5, "critical", 46),
                              (7, "warning", 44), (8, "normal", 33)]
    crit = events[2]
    assert (crit.kind, crit.severity, crit.device, crit.point, crit.source) == (
        "alert", Severity.CRITICAL, "m", "temp", "hot-route")
    assert crit.data == {"level": "critical", "previous": "normal", "direction": "above", "value": 46,
                         "threshold": 45, "reading_ts": 5}
    assert events[1].severity == Severity.INFO and events[1].data["previous"] == "warning"


def test_hysteresis_sequence_below():
    proc, events = make(below=Levels(warning=10, critical=5), hysteresis=0.5)
    feed(proc, [(0, 11), (1, 9.9), (2, 10.2), (3, 10.5), (4, 4), (5, 5.4), (6, 5.6)])
    assert levels(events) == [(1, "warning", 9.9), (3, "normal", 10.5), (4, "critical", 4), (6, "warning", 5.6)]
    assert events[0].data["direction"] == "below" and events[0].data["threshold"] == 10


def test_cooldown_holds_a_flapping_value_and_announces_where_it_settled():
    proc, events = make(above=Levels(warning=35, critical=45), cooldown=30)
    feed(proc, [(0, 36), (1, 34), (2, 36), (3, 34), (10, 46), (11, 36), (20, 34)])
    # warning at 0; the flapping is held; critical never waits (10); the rest waits for 10 + 30.
    assert levels(events) == [(0, "warning", 36), (10, "critical", 46)]
    assert proc.flush(39.9) == [] and len(events) == 2
    proc.flush(40)
    assert levels(events)[2:] == [(40, "normal", 34)]
    assert events[2].data["reading_ts"] == 20
    feed(proc, [(41, 36), (50, 34)])              # flaps inside the new cooldown and settles back
    proc.flush(100)
    assert len(events) == 3
    assert proc.held == 5


def test_a_held_change_is_announced_by_the_first_reading_after_the_cooldown():
    proc, events = make(above=Levels(warning=35), cooldown=10)
    feed(proc, [(0, 40), (5, 30), (10, 30)])
    assert levels(events) == [(0, "warning", 40), (10, "normal", 30)]


def test_only_points_matching_the_globs_are_watched():
    proc, events = make(above=Levels(critical=50), points=["temp*", "oil_?"])
    b = Batch("m", ["humidity", "temp_in", "oil_t", "oil_tx"], [99, 51, 52, 53], [0] * 4)
    assert proc.process(b) is b
    assert [(e.point, e.data["level"]) for e in events] == [("temp_in", "critical"), ("oil_t", "critical")]


def test_bad_and_non_numeric_readings_are_not_measurements():
    proc, events = make(above=Levels(warning=10))
    proc.process(Batch("m", ["p", "p", "p"], [99, "err", None], [0, 1, 2], [int(Quality.BAD_SENSOR), 0, 0]))
    assert events == []
    feed(proc, [(3, 11)], point="p")
    assert levels(events) == [(3, "warning", 11)]


def test_state_is_per_device():
    proc, events = make(above=Levels(warning=10))
    feed(proc, [(0, 11)], device="a")
    feed(proc, [(1, 11)], device="b")
    feed(proc, [(2, 12)], device="a")
    assert [(e.device, e.ts) for e in events] == [("a", 0), ("b", 1)]


@pytest.mark.parametrize("raw, where", [
    ({"hysteresis": 1}, "give above, below or both"),
    ({"above": {}}, "give warning, critical or both"),
    ({"above": {"warning": 50, "critical": 40}}, "above: warning (50.0) must be lower than critical (40.0)"),
    ({"below": {"warning": 5, "critical": 10}}, "below: warning (5.0) must be higher than critical (10.0)"),
    ({"above": {"warning": 10}, "below": {"warning": 20}}, "below levels (20.0) must lie under above levels (10.0)"),
    ({"above": {"warning": 10}, "cooldown": "-1s"}, "threshold.cooldown: expected a duration"),
    ({"above": {"warn": 10}}, "threshold.above.warn: unknown key"),
])
def test_bad_params_say_what_and_where(raw, where):
    with pytest.raises(ConfigError) as err:
        structure(raw, ThresholdParams, path="routes[0].through[0].threshold", file="site.yaml")
    assert where in str(err.value) and "site.yaml: routes[0].through[0].threshold" in str(err.value)


def test_loads_as_an_integration_and_emits_through_the_context():
    integration = Loader(DevFolderSource(Path("plugins"), warn=False)).load_one("threshold")
    ptype = integration.processor_types["threshold"]
    params = structure({"above": {"warning": 35, "critical": 45}, "hysteresis": 1, "cooldown": "30s"}, ptype.params)
    events = []
    proc = ptype.create(params, ProcessorContext("s", "r", events.append, lambda: 0.0))
    proc.process(Batch("sensors.n1", ["temp"], [50.0], [0]))
    assert [(e.kind, e.severity, e.data["level"]) for e in events] == [("alert", Severity.CRITICAL, "critical")]


def test_nan_does_not_clear_an_alarm():
    proc, events = make(above=Levels(critical=50))
    feed(proc, [(0, 60.0), (1, float("nan")), (2, 61.0)])
    assert levels(events) == [(0, "critical", 60.0)]


def test_messages_show_readable_numbers_and_the_data_keeps_the_exact_ones():
    proc, events = make(above=Levels(warning=45.0, critical=60.0))
    feed(proc, [(0, 45.00000000001), (1, 12.300000000000001)])
    assert [e.message for e in events] == ["m/temp = 45 is above warning level 45",
                                           "m/temp = 12.3 is back to normal (was warning)"]
    assert [e.data["value"] for e in events] == [45.00000000001, 12.300000000000001]
