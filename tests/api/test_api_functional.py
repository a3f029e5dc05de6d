"""The WebSocket API against a running site: site and entries, twins, live readings, commands with ack."""

from __future__ import annotations

import trio

from sitegate.testing import wait_for

from tests.api.support import api_site, connect


async def test_get_site_and_entries_show_the_running_simulator(tmp_path):
    async with api_site(tmp_path) as (host, server, tokens):
        token, _ = tokens.create("viewer", "ui")
        async with connect(server, token) as c:
            site = await c.call("get_site")
            assert site["success"] and site["result"]["site"] == "apitest"
            assert site["result"]["role"] == "viewer"
            entries = (await c.call("get_entries"))["result"]
            assert [(e["id"], e["state"]) for e in entries] == [("sim", "loaded")]
            await c.send({"id": 99, "type": "ping"})
            assert await c.recv() == {"id": 99, "type": "pong"}


async def test_subscribe_readings_streams_live_values_of_matching_points_only(tmp_path):
    async with api_site(tmp_path, interval=0.02) as (host, server, tokens):
        token, _ = tokens.create("viewer")
        async with connect(server, token) as c:
            sub = await c.call("subscribe_readings", devices=["sim.dev1"], points=["temp*"], max_rate=20)
            assert sub["success"] and sub["result"] is None
            seen_ts = set()
            for _ in range(5):
                ev = await c.event(sub["id"])
                assert ev["kind"] == "readings"
                assert list(ev["readings"]) == ["sim.dev1"]
                assert list(ev["readings"]["sim.dev1"]) == ["temperature"]
                value, ts, quality = ev["readings"]["sim.dev1"]["temperature"]
                assert isinstance(value, float) and quality == 0
                seen_ts.add(ts)
            assert len(seen_ts) >= 3, "values should keep changing"
            # The rate limit holds: at most ~20 messages/s for a 50 batches/s source.
            t0 = trio.current_time()
            for _ in range(10):
                await c.event(sub["id"])
            assert trio.current_time() - t0 >= 9 / 20 * 0.8
            assert (await c.call("unsubscribe", subscription=sub["id"]))["success"]
            again = await c.call("unsubscribe", subscription=sub["id"])
            assert again["error"]["code"] == "not_found"


async def test_write_command_round_trips_with_ack_and_is_audited(tmp_path):
    async with api_site(tmp_path, interval=0.02) as (host, server, tokens):
        token, info = tokens.create("operator", "op1")
        async with connect(server, token) as c:
            res = await c.call("device_command", device_id="sim.dev0", action="write", point="temperature", value=77.5)
            assert res["success"], res
            assert res["result"]["status"] == "ack" and res["result"]["value"] == 77.5
            # The value now comes back in the live readings and in the twin.
            sub = await c.call("subscribe_readings", devices=["sim.dev0"], points=["temperature"], max_rate=20)
            ev = await c.event(sub["id"])
            assert ev["readings"]["sim.dev0"]["temperature"][0] == 77.5
            dev = (await c.call("get_device", device_id="sim.dev0"))["result"]
            assert dev["points"]["temperature"]["value"] == 77.5
            nack = await c.call("device_command", device_id="sim.dev0", action="reboot")
            assert nack["error"]["code"] == "nack" and "unknown action 'reboot'" in nack["error"]["message"]
            missing = await c.call("device_command", device_id="nope", point="x", value=1)
            assert missing["error"]["code"] == "not_found"
            text = await c.call("device_command", device_id="sim.dev0", action="write", point="temperature", value="abc")
            assert text["error"] == {"code": "invalid_format",
                                     "message": "sim.dev0/temperature takes a finite float; got 'abc' (str)"}
        log = host.services["twins"].audit_log()
        assert [(a["who"], a["action"], a["status"]) for a in log[:2]] == [("op1", "reboot", "nack"),
                                                                           ("op1", "write", "ack")]


async def test_devices_are_listed_with_firmware_and_go_offline_when_their_entry_unloads(tmp_path):
    async with api_site(tmp_path, interval=0.02) as (host, server, tokens):
        host.services["twins"].tick = 0.05
        host.services["twins"].min_offline_after = 0.3
        token, _ = tokens.create("operator")
        async with connect(server, token) as c:
            events = await c.call("subscribe_events", kinds=["device.*", "entry.state"])
            await wait_for(lambda: all(t.online for t in host.services["twins"].twins.values()),
                           what="devices online")
            devices = (await c.call("list_devices"))["result"]
            assert [(d["id"], d["online"], d["fw_version"], d["entry"]) for d in devices] == [
                ("sim.dev0", True, "1.0.0", "sim"), ("sim.dev1", True, "1.0.0", "sim")]
            res = await c.call("unload_entry", entry_id="sim")
            assert res["result"]["state"] == "not_loaded"
            offline = set()
            with trio.fail_after(5):
                while len(offline) < 2:
                    ev = await c.event(events["id"])
                    if ev["kind"] == "device.offline":
                        offline.add(ev["device"])
            devices = (await c.call("list_devices"))["result"]
            assert not any(d["online"] for d in devices)
            res = await c.call("setup_entry", entry_id="sim")
            assert res["result"]["state"] == "loaded"


async def test_history_without_a_history_entry_is_not_found_with_a_reason(tmp_path):
    async with api_site(tmp_path) as (host, server, tokens):
        token, _ = tokens.create("viewer")
        async with connect(server, token) as c:
            res = await c.call("history", device_id="sim.dev0", point="temperature")
            assert res["error"]["code"] == "not_found"
            assert "history" in res["error"]["message"]


async def test_diagnostics_redact_secret_values(tmp_path):
    text = """
    site: apitest
    entries:
      - {id: sim, domain: simulator, config: {devices: 1, interval: 0.1, device_prefix: !secret prefix}}
    api: {port: 0}
    """
    async with api_site(tmp_path, text=text, secrets={"prefix": "hunter2secret"}) as (host, server, tokens):
        token, _ = tokens.create("operator")
        async with connect(server, token) as c:
            res = await c.call("diagnostics")
            assert res["success"], res
            import json
            text_out = json.dumps(res["result"])
            assert "hunter2secret" not in text_out
            assert "**********" in text_out
            assert res["result"]["entries"]["sim"]["state"] == "loaded"


async def test_plugin_upgrades_are_for_admins_and_need_the_signed_registry(tmp_path):
    async with api_site(tmp_path) as (host, server, tokens):
        op, _ = tokens.create("operator")
        admin, _ = tokens.create("admin", "boss")
        async with connect(server, op) as c:
            res = await c.call("upgrade_plugin", domain="simulator")
            assert res["error"]["code"] == "unauthorized"
            plugins = (await c.call("list_plugins"))["result"]
            assert [(p["domain"], p["entries"]) for p in plugins] == [("simulator", ["sim"])]
        async with connect(server, admin) as c:
            res = await c.call("upgrade_plugin", domain="simulator")
            assert res["error"]["code"] == "not_allowed" and "signed registry" in res["error"]["message"]
            res = await c.call("rollback_plugin", domain="nope")
            assert res["error"]["code"] == "not_found"
            sub = await c.call("subscribe_events", kinds=["device.desired"])
            res = await c.call("set_desired_config", device_id="sim.dev0", version="7")
            assert res["result"] == {"desired_config": "7", "reported_config": None, "drift": True}
            ev = await c.event(sub["id"])
            assert (ev["kind"], ev["device"], ev["data"]["desired_config"], ev["data"]["drift"]) == \
                ("device.desired", "sim.dev0", "7", True)
            host.services["twins"].report("sim.dev0", config_version="7")
            dev = (await c.call("get_device", device_id="sim.dev0"))["result"]
            assert (dev["reported_config"], dev["drift"]) == ("7", False)


async def test_events_and_readings_are_serialised_once_for_all_subscribers(tmp_path, monkeypatch):
    import sitegate.api.fanout as fanout
    calls = []
    real = fanout._dumps
    monkeypatch.setattr(fanout, "_dumps", lambda obj: calls.append(obj.get("kind")) or real(obj))
    async with api_site(tmp_path, interval=0.05) as (host, server, tokens):
        token, _ = tokens.create("viewer")
        async with connect(server, token) as a, connect(server, token) as b, connect(server, token) as c:
            subs = [(cl, await cl.call("subscribe_events", kinds=["test.*"])) for cl in (a, b, c)]
            from sitegate.model import Event
            host.events.emit(Event("test.once", "t", message="hello"))
            for cl, sub in subs:
                assert (await cl.event(sub["id"]))["message"] == "hello"
            assert calls.count("test.once") == 1
            rsubs = [(cl, await cl.call("subscribe_readings", max_rate=10)) for cl in (a, b, c)]
            assert len(server.readings.groups) == 1
            for cl, sub in rsubs:
                await cl.event(sub["id"])              # each one's own first snapshot
            assert not server.readings._initial
            bodies, messages = calls.count("readings"), server.readings.messages
            for _ in range(2):
                for cl, sub in rsubs:
                    await cl.event(sub["id"])
            # Three subscribers with the same filter: one body per flush, sent three times.
            flushes = calls.count("readings") - bodies
            assert flushes >= 1 and server.readings.messages - messages == 3 * flushes


async def test_history_comes_from_the_history_sink(tmp_path):
    text = """
    site: apitest
    entries:
      - {id: sim, domain: simulator, config: {devices: 1, interval: 0.02}}
      - {id: history, domain: history}
    routes:
      - {from: ["sim.*/*"], to: [history]}
    storage: {normal_period: 100ms}
    api: {port: 0}
    observability: {metrics: false}
    """
    import time
    async with api_site(tmp_path, text=text, services=True) as (host, server, tokens):
        token, _ = tokens.create("viewer")
        async with connect(server, token) as c:
            start = time.time() - 60
            with trio.fail_after(15):
                while True:
                    res = await c.call("history", device_id="sim.dev0", point="temperature", start=start,
                                       end=time.time() + 1)
                    assert res["success"], res
                    if len(res["result"]["rows"]) >= 10:
                        break
                    await trio.sleep(0.05)     # polling the condition, with the deadline above
            assert res["result"]["entry"] == "history"
            row = res["result"]["rows"][0]
            assert set(row) == {"ts", "value", "quality"} and start <= row["ts"]
            hourly = await c.call("history", device_id="sim.dev0", point="temperature", start=start,
                                  end=time.time() + 1, resolution=3600)
            assert hourly["result"]["rows"][0]["count"] >= 10
            bad = await c.call("history", device_id="sim.dev0", point="temperature", start=10, end=5)
            assert bad["error"]["code"] == "invalid_format" and "start" in bad["error"]["message"]


async def test_a_new_readings_subscriber_first_gets_the_newest_value_of_every_point(tmp_path):
    async with api_site(tmp_path, interval=3.0) as (host, server, tokens):
        await wait_for(lambda: len(host.pipeline.latest) == 4, what="first readings")
        token, _ = tokens.create("viewer")
        async with connect(server, token) as c:
            with trio.fail_after(2):       # well before the next sample, 3 s after the first
                sub = await c.call("subscribe_readings", points=["counter"])
                first = await c.event(sub["id"])
            assert {d: list(p) for d, p in first["readings"].items()} == {"sim.dev0": ["counter"],
                                                                         "sim.dev1": ["counter"]}
            value, ts, quality = first["readings"]["sim.dev0"]["counter"]
            assert (value, quality) == (host.pipeline.latest[("sim.dev0", "counter")][0], 0)
