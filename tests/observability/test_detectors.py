"""Each silent failure, provoked for real, raises its event."""

from __future__ import annotations

import trio

from sitegate.model import Command
from sitegate.testing import running_site, wait_for


async def _next_event(host, kind: str, timeout: float = 10):
    sub = host.events.subscribe(kind)
    with trio.fail_after(timeout):
        return await sub.receive.receive()


async def test_device_that_goes_quiet_raises_an_event(tmp_path):
    site = """
    site: t
    observability: {port: 0, detectors: {device_quiet_intervals: 3}}
    entries:
      - {id: sim, domain: simulator, config: {interval: 50ms}}
    """
    async with running_site(tmp_path, site) as host:
        det = host.services["detectors"]
        det.tick = 0.05
        await wait_for(lambda: "sim.dev0" in det.devices and det.devices["sim.dev0"].interval > 0)
        # The device stops answering while its entry stays loaded.
        sub = host.events.subscribe("device.quiet")
        result = await host.command("sim", Command("sim.dev0", "silence"))
        assert result.ok and host.entry("sim").state.label == "loaded"
        with trio.fail_after(10):
            event = await sub.receive.receive()
        assert event.device == "sim.dev0" and "has sent nothing" in event.message


async def test_sensor_drift_against_reference_is_reported(tmp_path):
    site = """
    site: t
    observability:
      port: 0
      detectors:
        drift: [{point: field.dev0/temperature, reference: ref.dev0/temperature, max_delta: 2.0, window: 200ms}]
    entries:
      - id: field
        domain: simulator
        config: {interval: 10ms, points: [{name: temperature, shape: ramp, amplitude: 0.1, offset: 27.5}]}
      - id: ref
        domain: simulator
        config: {interval: 10ms, points: [{name: temperature, shape: ramp, amplitude: 0.1, offset: 21.0}]}
    """
    async with running_site(tmp_path, site) as host:
        host.services["detectors"].tick = 0.05
        event = await _next_event(host, "sensor.drift")
        assert event.device == "field.dev0" and event.point == "temperature"
        assert 6.0 < event.data["delta"] < 7.0
