"""The simulator's signals are deterministic functions of time, and its entry publishes them."""

import json
import os
import subprocess
import sys

import pytest

from plugins.simulator.signals import Signal, evaluator
from sitegate.testing import Recorder, running_site, wait_for


def test_same_seed_and_time_give_the_same_value():
    for shape in ("sine", "step", "ramp", "noise", "counter"):
        f, g = evaluator(Signal("p", shape=shape), 3), evaluator(Signal("p", shape=shape), 3)
        assert [f(t) for t in (0.0, 1.5, 1000.25)] == [g(t) for t in (0.0, 1.5, 1000.25)]


def test_counter_wraps_at_its_modulus():
    f = evaluator(Signal("c", shape="counter", rate=10, wrap=100), 0)
    assert f(9.95) == 99 and f(10.0) == 0 and f(12.3) == 23


def test_two_devices_of_one_entry_differ_in_every_shape():
    ts = [1.7e9 + k * 0.25 for k in range(40)]
    for shape in ("sine", "step", "ramp", "noise", "counter"):
        signal = Signal("p", shape=shape, period=4)
        seqs = {d: [evaluator(signal, 0, d)(t) for t in ts] for d in ("sim.dev0", "sim.dev1", "sim.dev2")}
        assert len({tuple(v) for v in seqs.values()}) == 3, (shape, seqs)


def test_each_device_has_its_own_band_inside_the_configured_one():
    for shape, low, high in (("sine", 3, 7), ("noise", 3, 7), ("step", 5, 7), ("ramp", 5, 7)):
        s = Signal("s", shape=shape, amplitude=2, offset=5, period=10)
        bands = set()
        for d in range(20):
            values = [evaluator(s, 0, f"sim.dev{d}")(t / 10) for t in range(2000)]
            assert low - 1e-9 <= min(values) and max(values) <= high + 1e-9, (shape, d)
            # At most 10 % narrower than the configured band.
            assert max(values) - min(values) > 0.9 * (high - low) - 0.05, (shape, d)
            bands.add((round(min(values), 2), round(max(values), 2)))
        assert len(bands) > 10, (shape, bands)
    s = Signal("s", amplitude=2, offset=5, period=10)
    assert [evaluator(s, 0, "sim.dev7")(t) for t in range(10)] != [evaluator(s, 1, "sim.dev7")(t) for t in range(10)]


SEQUENCE = """
import json, sys
sys.path.insert(0, {repo!r})
from plugins.simulator.signals import SHAPES, Signal, evaluator
print(json.dumps({{shape: [evaluator(Signal("p", shape=shape), 4, "line.dev3")(1.7e9 + k / 8) for k in range(50)]
                  for shape in SHAPES}}))
"""


def test_the_same_device_gives_the_same_sequence_in_two_runs():
    # Two interpreters with different string-hash seeds: nothing may come from hash() or a process's RNG.
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    runs = [json.loads(subprocess.run([sys.executable, "-c", SEQUENCE.format(repo=repo)], check=True, text=True,
                                      capture_output=True, env={**os.environ, "PYTHONHASHSEED": hs}).stdout)
            for hs in ("1", "2")]
    assert runs[0] == runs[1]
    assert len(set(runs[0]["noise"])) == 50 and runs[0]["counter"][0] != runs[0]["counter"][-1]


def test_a_devices_counter_starts_elsewhere_and_still_wraps_at_its_modulus():
    f = evaluator(Signal("c", shape="counter", rate=10, wrap=100), 0, "sim.dev1")
    values = [f(t / 10) for t in range(200)]
    assert all(isinstance(v, int) and 0 <= v < 100 for v in values)
    steps = [b - a for a, b in zip(values, values[1:])]
    # +1 per 0.1 s, and exactly once per 10 s from 99 back to 0.
    assert sorted(set(steps)) == [-99, 1] and steps.count(-99) == 2
    assert values[0] != evaluator(Signal("c", shape="counter", rate=10, wrap=100), 0, "sim.dev2")(0.0)


def test_sine_stays_within_offset_plus_minus_amplitude():
    f = evaluator(Signal("s", amplitude=2, offset=5, period=10), 0)
    values = [f(t / 10) for t in range(1000)]
    assert 3 - 1e-9 <= min(values) < 3.1 and 6.9 < max(values) <= 7 + 1e-9


async def test_entry_publishes_every_device_and_declares_them(tmp_path):
    site = """
    site: t
    entries:
      - id: sim
        domain: simulator
        config: {devices: 3, interval: 20ms, points: [{name: a}, {name: b, shape: counter, unit: Wh}]}
    """
    async with running_site(tmp_path, site) as host:
        rec = Recorder(host)
        await wait_for(lambda: rec.devices() == {"sim.dev0", "sim.dev1", "sim.dev2"})
        assert host.devices.point("sim.dev1", "b").unit == "Wh"
        assert {p for _, p, _, _ in rec.readings("sim.dev0")} == {"a", "b"}
        # Each reading is its device's own signal at its timestamp (the point's seed is seed + its index).
        signals = {"a": (Signal("a"), 0), "b": (Signal("b", shape="counter", unit="Wh"), 1)}
        readings = rec.readings()
        for device, point, value, ts in readings:
            signal, seed = signals[point]
            assert value == evaluator(signal, seed, device)(ts), (device, point, value, ts)
        at = {}
        for device, point, value, ts in readings:
            at.setdefault((point, ts), {})[device] = value
        assert any(len(set(v.values())) == 3 for (p, _), v in at.items() if p == "a"), at


@pytest.mark.parametrize("bad, message", [
    ({"devices": 0}, "devices: expected at least 1"),
    ({"points": [{"name": "x", "shape": "square"}]}, "expected one of sine, step, ramp, noise, counter"),
])
def test_bad_config_is_refused_with_its_reason(bad, message):
    from sitegate.errors import ConfigError
    from sitegate.structure import structure
    from plugins.simulator import SimulatorConfig
    with pytest.raises(ConfigError) as err:
        structure(bad, SimulatorConfig)
    assert message in str(err.value)
