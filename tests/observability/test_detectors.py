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


FIXTURES = __import__("pathlib").Path(__file__).resolve().parents[1] / "core" / "fixture_plugins"


async def test_ingestion_stall_while_adapters_are_up_raises_an_event(tmp_path):
    site = """
    site: t
    observability: {port: 0, detectors: {ingestion_stall: 300ms}}
    entries:
      - {id: sim, domain: simulator, config: {interval: 20ms, devices: 2}}
    """
    async with running_site(tmp_path, site) as host:
        host.services["detectors"].tick = 0.05
        await wait_for(lambda: host.pipeline.readings_in > 10)
        sub = host.events.subscribe("ingestion.*")
        for dev in ("sim.dev0", "sim.dev1"):
            assert (await host.command("sim", Command(dev, "silence"))).ok
        with trio.fail_after(10):
            stall = await sub.receive.receive()
        assert stall.kind == "ingestion.stall" and stall.data["seconds"] >= 0.3
        assert host.services["detectors"].counts["ingestion_stall"] == 1


async def test_online_sink_that_stops_advancing_raises_sink_stuck(tmp_path):
    site = """
    site: t
    observability: {port: 0, detectors: {sink_stuck: 300ms}}
    entries:
      - {id: sim, domain: simulator, config: {interval: 20ms}}
      - {id: wedged, domain: testsink, config: {mode: hang}}
    routes:
      - {from: ["sim.*/*"], to: [wedged]}
    """
    async with running_site(tmp_path, site, plugin_dirs=[FIXTURES]) as host:
        host.services["detectors"].tick = 0.05
        event = await _next_event(host, "sink.stuck")
        assert event.data["sink"] == "wedged" and event.data["backlog"] > 0


async def test_redelivery_after_lost_acknowledgements_is_reported_as_a_replay(tmp_path):
    site = """
    site: t
    observability: {port: 0}
    entries:
      - {id: sim, domain: simulator, config: {interval: 20ms}}
      - {id: flaky, domain: testsink, config: {lose_acks: 3}}
    routes:
      - {from: ["sim.*/*"], to: [flaky]}
    """
    async with running_site(tmp_path, site, plugin_dirs=[FIXTURES]) as host:
        host.services["detectors"].tick = 0.05
        event = await _next_event(host, "sink.replay", timeout=30)
        assert event.data["sink"] == "flaky" and event.data["duplicates"] > 0
        sink = host.sinks["flaky"]
        assert host.services["dataplane"].sink_status()["flaky"]["duplicates"] == sink.duplicates > 0
