"""The processors inside a running site: routes from a site file, the data plane running the steps,
alerts on the event bus, aggregates delivered to a sink."""

from pathlib import Path

import trio

from sitegate.testing import running_site, wait_for

FIXTURES = Path(__file__).parent / "fixture_plugins"

SITE = """
site: t/processors
entries:
  - id: sim
    domain: simulator
    config:
      interval: 10ms
      points: [{name: temp, shape: sine, amplitude: 10, offset: 20, period: 1}]
  - {id: out, domain: collect}
routes:
  - name: alerts
    from: ["sim.*/temp"]
    through: [{threshold: {above: {warning: 25}, hysteresis: 1}}]
    priority: critical
  - name: halves
    from: ["sim.*/temp"]
    through: [{deadband: {abs: 1}}, {window: {every: 500ms, keep: [min, max, count], grace: 0}}]
    to: [out]
"""


async def test_alerts_reach_the_event_bus_and_aggregates_reach_the_sink(tmp_path):
    async with running_site(tmp_path, SITE, plugin_dirs=[FIXTURES]) as host:
        alerts = host.events.subscribe("alert")
        with trio.fail_after(10):
            async for event in alerts:
                if event.data.get("level") == "warning":
                    break
        assert (event.device, event.point, event.source) == ("sim.dev0", "temp", "alerts")
        assert event.data["value"] > 25
        sink = host.sinks["out"]
        await wait_for(lambda: {"temp.min", "temp.max", "temp.count"} <= {r[1] for r in sink.readings},
                       10, what="window aggregates delivered to the sink")
    rows = {(r[1], r[3]): r[2] for r in sink.readings}
    ends = {t for (_, t) in rows}
    assert all(round(t * 2) == t * 2 for t in ends)              # stamped on 500 ms boundaries
    assert {p for (p, _) in rows} == {"temp.min", "temp.max", "temp.count"}
    for t in ends:
        if ("temp.min", t) in rows and ("temp.max", t) in rows:
            assert 10 <= rows[("temp.min", t)] <= rows[("temp.max", t)] <= 30
