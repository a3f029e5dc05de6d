"""Zone rules against hand-computed aggregates: activation, clearing, staleness, cooldown, min_devices."""

from pathlib import Path

import pytest

from sitegate.errors import ConfigError
from sitegate.loader import DevFolderSource, Loader
from sitegate.model import Batch, Quality, Severity
from sitegate.plugins import ProcessorContext
from sitegate.structure import structure

from plugins.zone.processor import Condition, Zone, ZoneParams

HOT = [Condition("temp", "avg", above=40), Condition("vibration", "max", above=7)]


def make(**kw):
    kw.setdefault("name", "overheat")
    kw.setdefault("when", HOT)
    kw.setdefault("devices", "line3.*")
    events = []
    return Zone(ZoneParams(**kw), ProcessorContext("s", "zones", events.append, lambda: 0.0)), events


def send(zone, device, t, **values):
    b = Batch(device, list(values), list(values.values()), [t] * len(values))
    assert zone.process(b) is b


def test_alert_when_average_temperature_and_highest_vibration_both_exceed():
    z, events = make(severity="critical")
    send(z, "line3.a", 0, temp=42.0)
    send(z, "line3.b", 1, temp=37.0)            # avg 39.5
    send(z, "line3.b", 2, temp=39.0)            # avg 40.5, but no vibration yet
    send(z, "line4.x", 3, temp=0.0, vibration=0.0)   # not in the zone
    assert events == []
    send(z, "line3.a", 4, vibration=8.0)        # max 8 > 7: both hold
    [e] = events
    assert (e.kind, e.severity, e.ts, e.source) == ("alert", Severity.CRITICAL, 4, "zones")
    assert e.data["rule"] == "overheat" and e.data["level"] == "critical"
    assert [(c["point"], c["value"], c["devices"]) for c in e.data["conditions"]] == [("temp", 40.5, 2), ("vibration", 8.0, 1)]
    send(z, "line3.b", 5, vibration=9.0)        # still holds: no second alert
    send(z, "line3.a", 6, temp=40.0)            # avg 39.5: cleared
    assert [(e.ts, e.data["level"], e.severity) for e in events[1:]] == [(6, "normal", Severity.INFO)]


def test_a_silent_device_drops_out_after_stale_after():
    z, events = make(stale_after=30)
    send(z, "line3.b", 0, temp=20.0)
    send(z, "line3.a", 10, temp=50.0, vibration=8.0)    # avg 35: no alert
    assert events == []
    # b (t=0) is older than 35 - 30: it no longer holds the average down; a alone: avg 50.
    send(z, "line3.a", 35, temp=50.0, vibration=8.0)
    assert [(e.ts, e.data["level"], e.data["conditions"][0]["devices"]) for e in events] == [(35, "warning", 1)]
    z.flush(65)                                  # a (t=35) is exactly 30 s old: still fresh
    assert len(events) == 1
    z.flush(65.5)                                # nothing fresh any more: cleared by the wall clock
    assert [(e.ts, e.data["level"]) for e in events[1:]] == [(65.5, "normal")]


def test_cooldown_between_activations():
    z, events = make(when=[Condition("vibration", "max", above=7)], cooldown=60)
    for t, v in [(0, 8), (1, 6), (2, 8), (30, 6), (61, 8)]:
        send(z, "line3.a", t, vibration=float(v))
    assert [(e.ts, e.data["level"]) for e in events] == [(0, "warning"), (1, "normal"), (61, "warning")]


def test_min_devices_and_bad_readings():
    z, events = make(when=[Condition("temp", "min", below=5)], min_devices=2)
    send(z, "line3.a", 0, temp=1.0)
    assert events == []                         # one device is not enough
    z.process(Batch("line3.b", ["temp"], [-50.0], [1], [int(Quality.BAD_SENSOR)]))
    assert events == []                         # a bad reading does not count
    send(z, "line3.b", 2, temp=4.0)
    assert [(e.ts, e.data["conditions"][0]["value"]) for e in events] == [(2, 1.0)]


@pytest.mark.parametrize("raw, where", [
    ({"name": "x", "when": []}, "when: expected at least one condition"),
    ({"name": "x", "when": [{"point": "t", "above": 1, "below": 0}]}, "give exactly one of above, below"),
    ({"name": "x", "when": [{"point": "t", "agg": "median", "above": 1}]}, "agg: expected one of min, max, avg"),
    ({"name": "x", "when": [{"point": "t", "above": 1}], "severity": "fatal"}, "severity: expected one of warning, critical"),
    ({"when": [{"point": "t", "above": 1}]}, "required key 'name' is missing"),
])
def test_bad_params_say_what_and_where(raw, where):
    with pytest.raises(ConfigError) as err:
        structure(raw, ZoneParams, path="routes[3].through[0].zone", file="site.yaml")
    assert where in str(err.value) and "site.yaml: routes[3].through[0].zone" in str(err.value)


def test_loads_as_an_integration_and_creates_from_site_params():
    integration = Loader(DevFolderSource(Path("plugins"), warn=False)).load_one("zone")
    ptype = integration.processor_types["zone"]
    params = structure({"name": "overheat", "devices": "line3.*", "severity": "critical",
                        "when": [{"point": "temp", "agg": "avg", "above": 40},
                                 {"point": "vibration", "agg": "max", "above": 7}]}, ptype.params)
    events = []
    proc = ptype.create(params, ProcessorContext("s", "r", events.append, lambda: 0.0))
    proc.process(Batch("line3.a", ["temp", "vibration"], [45.0, 7.5], [0, 0]))
    assert [(e.kind, e.severity) for e in events] == [("alert", Severity.CRITICAL)]
