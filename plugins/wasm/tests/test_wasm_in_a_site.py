"""The wasm step inside a running site: averaged readings reach a sink; a broken module raises
`wasm.failed` on the event bus while the rest of the site keeps running."""

from __future__ import annotations

from pathlib import Path

from sitegate.testing import running_site, wait_for

from wasm_helpers import wat

FIXTURES = Path(__file__).parent / "fixture_plugins"

SITE = f"""
site: t/wasm
entries:
  - id: sim
    domain: simulator
    config:
      interval: 10ms
      points: [{{name: temp, shape: sine, amplitude: 10, offset: 20, period: 1}}]
  - {{id: out, domain: wasmcollect}}
routes:
  - name: averaged
    from: ["sim.*/temp"]
    through: [{{wasm: {{module_path: "{wat('moving_average.wat')}", unsigned_dev: true, config: {{window: 4}}}}}}]
    to: [out]
    priority: critical
  - name: broken
    from: ["sim.*/temp"]
    through: [{{wasm: {{module_path: "{wat('trap_negative.wat')}", unsigned_dev: true, max_failures: 2}}}},
              {{deadband: {{abs: 0}}}}]
"""


async def test_averages_reach_the_sink_and_a_broken_module_goes_to_failed(tmp_path):
    # A sine around 0: the broken route's module traps on every batch with a negative value.
    site = SITE.replace("offset: 20,", "offset: 0,")
    async with running_site(tmp_path, site, plugin_dirs=[FIXTURES]) as host:
        sink = host.sinks["out"]
        await wait_for(lambda: len(sink.readings) >= 20, 10, what="averaged readings at the sink")
        failed = await wait_for(lambda: [e for e in host.events.recent if e.kind == "wasm.failed"], 10,
                                what="wasm.failed on the event bus")
        assert failed[0].source == "broken" and failed[0].data["reason"] == "trap"
        count = len(sink.readings)
        await wait_for(lambda: len(sink.readings) > count + 5, 10, what="readings after the failure")
    raw = [v for (_, p, v, _) in sink.readings if p == "temp"]
    assert raw and all(-10.0 <= v <= 10.0 for v in raw)   # each device's band lies inside the configured one
