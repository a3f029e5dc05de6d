"""sitegate.testing's helpers do what plugin authors rely on: a clock that moves only when told,
entries added from a dict, batches recorded at the sink, and a WebSocket client that is authorised."""

from __future__ import annotations

import pytest

from sitegate.testing import (ManualClock, Recorder, SinkRecorder, add_entry, api_client, clocked_site, running_site,
                              wait_for)

SIM = "site: t\nentries:\n  - {id: sim, domain: simulator, config: {devices: 1, interval: 10ms}}\n"


def test_manual_clock_moves_only_forward():
    clock = ManualClock(100.0)
    assert clock() == 100.0 and clock.advance(5) == 105.0 and clock.set(200) == 200.0
    with pytest.raises(ValueError, match="only moves forward"):
        clock.advance(-1)
    with pytest.raises(ValueError, match="before the current time"):
        clock.set(150)


async def test_readings_carry_the_manual_clock_time(tmp_path):
    clock = ManualClock(1_000_000.0)
    async with clocked_site(tmp_path, SIM, clock=clock) as host:
        rec = Recorder(host)
        await wait_for(lambda: rec.readings("sim.dev0"), what="a reading")
        assert {t for *_, t in rec.readings("sim.dev0")} == {1_000_000.0}
        clock.advance(3600)
        await wait_for(lambda: any(t == 1_003_600.0 for *_, t in rec.readings("sim.dev0")), what="the new time")


async def test_add_entry_from_a_dict_loads_it_in_the_running_site(tmp_path):
    async with running_site(tmp_path, SIM) as host:
        rec = Recorder(host)
        state = await add_entry(host, {"id": "more", "domain": "simulator", "config": {"devices": 2, "interval": "10ms"}})
        assert state == "loaded"
        await wait_for(lambda: {"more.dev0", "more.dev1"} <= rec.devices(), what="readings of the added entry")
        assert await add_entry(host, {"id": "broken", "domain": "simulator", "config": {"devices": 0}}) == "setup_error"
        with pytest.raises(ValueError, match="needs 'id' and 'domain'"):
            await add_entry(host, {"domain": "simulator"})


async def test_sink_recorder_sees_delivered_batches_and_names_missing_sinks(tmp_path):
    site = SIM + "  - {id: hist, domain: history}\nroutes:\n  - {name: r, from: ['sim.*/*'], to: [hist]}\n"
    async with running_site(tmp_path, site) as host:
        rec = SinkRecorder(host, "hist")
        rows = await rec.wait_readings(4)
        assert {d for d, *_ in rows} == {"sim.dev0"} and rec.calls >= 1
        with pytest.raises(KeyError, match="no sink is attached for entry 'sim'"):
            SinkRecorder(host, "sim")


async def test_api_client_is_authorised_with_the_role_asked_for(tmp_path):
    async with running_site(tmp_path, SIM) as host:
        async with api_client(host, role="viewer") as ws:
            reply = await ws.call("get_site")
            assert reply["type"] == "result" and reply["result"]["site"] == "t", reply
            assert reply["result"]["role"] == "viewer"
            sub = await ws.call("subscribe_readings", devices=["sim.*"], points=["temperature"])
            event = await ws.event(sub["id"])
            assert event["kind"] == "readings" and list(event["readings"]["sim.dev0"]) == ["temperature"], event
