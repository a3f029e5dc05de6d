"""The simulator's signals are deterministic functions of time, and its entry publishes them."""

import math

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
