"""Calibration against hand-computed values: scale/offset order, globs, first rule wins, units."""

from pathlib import Path

import pytest

from sitegate.errors import ConfigError
from sitegate.loader import DevFolderSource, Loader
from sitegate.model import Batch
from sitegate.plugins import ProcessorContext
from sitegate.structure import structure

from plugins.calibration.processor import Calibration, CalibrationParams, Rule
from plugins.calibration.units import conversion


def calib(*rules):
    return Calibration(CalibrationParams(list(rules)))


def test_scale_then_offset_on_matching_points_only():
    c = calib(Rule(points="temp*", scale=2.0, offset=-1.0))
    b = c.process(Batch("m", ["temp_a", "pressure", "temp_b"], [10.0, 10.0, 0.5], [0, 0, 0], [0, 0x40, 0], "src", 7))
    assert list(b.values) == [19.0, 10.0, 0.0]
    assert (b.points, b.timestamps, b.quality, b.source, b.seq) == (
        ["temp_a", "pressure", "temp_b"], [0, 0, 0], [0, 0x40, 0], "src", 7)


def test_first_matching_rule_wins_and_devices_glob_narrows():
    c = calib(Rule(points="t", devices="line3.*", offset=100.0), Rule(points="*", offset=1.0))
    assert list(c.process(Batch("line3.n1", ["t", "u"], [1.0, 1.0], [0, 0])).values) == [101.0, 2.0]
    assert list(c.process(Batch("line4.n1", ["t"], [1.0], [0])).values) == [2.0]


def test_unit_conversions_hand_computed():
    c = calib(Rule(points="f", convert="degF->degC"), Rule(points="p", convert="kPa->bar"),
              Rule(points="e", convert="Wh->kWh"), Rule(points="k", convert="degC->K"),
              Rule(points="psi", convert="psi->bar"))
    b = c.process(Batch("m", ["f", "f", "p", "e", "k", "psi"], [212.0, -40.0, 101.325, 1500, 20.0, 14.5], [0] * 6))
    assert list(b.values) == pytest.approx([100.0, -40.0, 1.01325, 1.5, 293.15, 0.99973980751], rel=1e-9)   # 14.5 psi x 6894.757 Pa/psi


def test_calibration_applies_in_the_raw_unit_before_conversion():
    # a probe reading 2 degF high: (214 - 2) degF = 100 degC
    c = calib(Rule(points="f", offset=-2.0, convert="degF->degC"))
    assert c.process(Batch("m", ["f"], [214.0], [0])).values[0] == pytest.approx(100.0)


def test_untouched_batches_are_returned_as_is_and_non_numbers_kept():
    c = calib(Rule(points="x", scale=10.0))
    b = Batch("m", ["y"], [1.0], [0])
    assert c.process(b) is b
    out = c.process(Batch("m", ["x", "x", "x", "x"], ["err", None, True, 3], [0] * 4))
    assert list(out.values) == ["err", None, True, 30.0]


@pytest.mark.parametrize("spec, why", [
    ("degF-degC", "expected 'from->to'"),
    ("degF->furlong", "unknown unit 'furlong'"),
    ("kPa->degC", "kPa is a pressure and degC a temperature unit; kPa converts to Pa, hPa, kPa"),
])
def test_bad_conversions_say_why(spec, why):
    with pytest.raises(ConfigError) as err:
        structure({"rules": [{"points": "a"}, {"points": "b", "convert": spec}]}, CalibrationParams,
                  path="routes[2].through[0].calibration", file="site.yaml")
    text = str(err.value)
    assert why in text and "site.yaml: routes[2].through[0].calibration.rules[1]" in text


def test_no_rules_is_an_error():
    with pytest.raises(ConfigError, match="rules: expected at least one rule"):
        structure({"rules": []}, CalibrationParams, path="x")


def test_conversion_round_trips():
    a, b = conversion("bar->kPa")
    c, d = conversion("kPa->bar")
    assert (a * (c * 3.2 + d) + b) == pytest.approx(3.2)


def test_loads_as_an_integration_and_creates_from_site_params():
    integration = Loader(DevFolderSource(Path("plugins"), warn=False)).load_one("calibration")
    ptype = integration.processor_types["calibration"]
    params = structure({"rules": [{"points": "oil_temp", "offset": -0.4}, {"points": "*_kpa", "convert": "kPa->bar"}]},
                       ptype.params)
    proc = ptype.create(params, ProcessorContext("s", "r", lambda e: None, lambda: 0.0))
    out = proc.process(Batch("plc", ["oil_temp", "line_kpa"], [50.4, 250.0], [0, 0]))
    assert list(out.values) == pytest.approx([50.0, 2.5])
