"""Anomaly scoring against a hand-computed EWMA, spike robustness, actions and cooldown."""

import math
from pathlib import Path

import pytest

from sitegate.errors import ConfigError
from sitegate.loader import DevFolderSource, Loader
from sitegate.model import Batch, Quality
from sitegate.plugins import ProcessorContext
from sitegate.structure import structure

from plugins.anomaly.processor import Anomaly, AnomalyParams

UNC = int(Quality.UNCERTAIN)


def make(**kw):
    events = []
    return Anomaly(AnomalyParams(**kw), ProcessorContext("s", "vib", events.append, lambda: 0.0)), events


def qualities(proc, values, point="p"):
    out = []
    for t, v in enumerate(values):
        b = proc.process(Batch("m", [point], [v], [t]))
        out.append(b.quality_at(0))
    return out


def test_hand_computed_ewma_with_alpha_one_half():
    a, _ = make(alpha=0.5, warmup=2, threshold=3)
    # 10: mean 10.  12 (warm-up): mean 11, var 0.5 * (0 + 2 * 1) = 1.  11: z 0; mean 11, var 0.5.
    # 14: z = 3 / sqrt(0.5) = 4.24 > 3, flagged; learns 11 + 3 * sqrt(0.5) instead of 14:
    #     d = 3 * sqrt(0.5), mean 11 + d / 2 = 12.0607, var 0.5 * (0.5 + d * d / 2) = 0.5 * (0.5 + 2.25) = 1.375.
    # 12: z = -0.06 / 1.17: fine.
    assert qualities(a, [10, 12, 11, 14, 12]) == [0, 0, 0, UNC, 0]
    n, mean, var, _ = a.states["m"]["p"]
    # after 12: d = 12 - 12.0607 = -0.0607; mean 12.0303; var 0.5 * (1.375 + 0.0607 * 0.0303)
    m4 = 11 + 1.5 * math.sqrt(0.5)
    assert n == 5
    assert mean == pytest.approx(m4 + 0.5 * (12 - m4))
    assert var == pytest.approx(0.5 * (1.375 + 0.5 * (12 - m4) ** 2))


def test_no_flag_during_warmup():
    a, _ = make(alpha=0.5, warmup=5, threshold=1)
    assert qualities(a, [0, 100, 0, 100, 0, 100]) == [0, 0, 0, 0, 0, UNC]


def test_a_single_spike_does_not_hide_the_next_one():
    a, _ = make(alpha=0.1, warmup=10, threshold=4)
    base = [10.0 + (0.1 if i % 2 else -0.1) for i in range(40)]
    flags = qualities(a, base + [50.0] + base[:5] + [50.0])
    assert flags[40] == UNC and flags[46] == UNC and sum(1 for f in flags if f) == 2


def test_a_constant_signal_flags_any_change_unless_min_std():
    a, _ = make(warmup=3)
    assert qualities(a, [5, 5, 5, 5, 5.01]) == [0, 0, 0, 0, UNC]
    a, _ = make(warmup=3, min_std=0.1, threshold=4)
    assert qualities(a, [5, 5, 5, 5, 5.01, 5.5]) == [0, 0, 0, 0, 0, UNC]


def test_event_action_emits_with_cooldown_and_leaves_quality():
    a, events = make(alpha=0.5, warmup=2, threshold=3, action="event", cooldown=10)
    assert qualities(a, [10, 12, 11, 14, 12, 30, 11, 11, 11, 11, 11, 11, 11, 11, 40]) == [0] * 15
    # flagged at t=3 (event), t=5 (inside the cooldown: no event), t=14 (event)
    assert a.flagged == 3
    assert [(e.kind, e.ts, e.point, e.data["value"]) for e in events] == [("anomaly", 3, "p", 14), ("anomaly", 14, "p", 40)]
    assert events[0].data["z"] == pytest.approx(3 / math.sqrt(0.5))


def test_both_marks_and_emits_and_bad_readings_are_not_scored():
    a, events = make(alpha=0.5, warmup=2, threshold=3, action="both")
    b = a.process(Batch("m", ["p"] * 6, [10, 12, 11, 999, 14, "x"], list(range(6)),
                        [0, 0, 0, int(Quality.BAD_SENSOR), 0, 0]))
    assert list(b.quality) == [0, 0, 0, int(Quality.BAD_SENSOR), UNC, 0]
    assert len(events) == 1


def test_only_points_matching_the_globs_are_scored():
    a, _ = make(warmup=2, points=["vib*"])
    b = a.process(Batch("m", ["temp", "vib_x"] * 4, [1, 1, 1, 1, 1, 1, 99, 99], [0] * 8))
    assert list(b.quality) == [0, 0, 0, 0, 0, 0, 0, UNC]


@pytest.mark.parametrize("raw, where", [
    ({"alpha": 0}, "alpha: expected a weight in (0, 1]"),
    ({"action": "log"}, "action: expected one of quality, event, both"),
    ({"warmup": 0}, "warmup: expected at least 1 reading"),
])
def test_bad_params_say_what_and_where(raw, where):
    with pytest.raises(ConfigError) as err:
        structure(raw, AnomalyParams, path="routes[0].through[1].anomaly", file="site.yaml")
    assert where in str(err.value) and "site.yaml: routes[0].through[1].anomaly" in str(err.value)


def test_loads_as_an_integration_and_creates_from_site_params():
    integration = Loader(DevFolderSource(Path("plugins"), warn=False)).load_one("anomaly")
    ptype = integration.processor_types["anomaly"]
    params = structure({"alpha": 0.5, "warmup": 2, "threshold": 3, "action": "both", "cooldown": "1m"}, ptype.params)
    events = []
    proc = ptype.create(params, ProcessorContext("s", "r", events.append, lambda: 0.0))
    qs = [proc.process(Batch("m", ["p"], [v], [t])).quality_at(0) for t, v in enumerate([10, 12, 11, 14])]
    assert qs == [0, 0, 0, UNC] and [e.kind for e in events] == ["anomaly"]


def test_the_message_shows_a_readable_value_and_the_data_the_exact_one():
    a, events = make(alpha=0.5, warmup=2, threshold=3, action="event")
    qualities(a, [10, 12, 11, 14.000000000000002])
    (event,) = events
    assert event.message.startswith("m/p = 14 is ") and event.data["value"] == 14.000000000000002
