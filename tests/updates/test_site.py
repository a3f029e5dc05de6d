"""The rollout service in a real site: the mqttsn_update entry's handler, rollout.* events on the bus."""

from __future__ import annotations

import trio

from examples.devices.fleet import Fleet
from sitegate.updates.policy import RolloutPolicy
from sitegate.updates.service import start_rollouts


async def test_rollout_through_a_site_entry_emits_progress_events(sitegate_site, publisher_key, make_artifact):
    key = publisher_key.verify_key.encode().hex()
    site = f"""
    site: test/updates
    entries:
      - id: node-updates
        domain: mqttsn_update
        config: {{port: 0, trusted_keys: ["{key}"], retry: 0.3, request_timeout: 3}}
    """
    async with sitegate_site(site) as host, trio.open_nursery() as nursery:
        events = []
        host.events.add_callback(lambda e: events.append(e) if e.kind.startswith("rollout.") else None)
        engine = await start_rollouts(host, nursery)   # `sitegate run` starts it with the site already
        assert host.services["rollouts"] is engine and await start_rollouts(host, nursery) is engine
        handler = host.entry("node-updates").data["update_handler"]
        fleet = Fleet(20, ("127.0.0.1", handler.port), [key], hardware=["th-v1", "th-v2", "th-v3"])
        await nursery.start(fleet.run)
        with trio.fail_after(10):
            while len(handler.devices) < 20:
                await trio.sleep(0.01)
        rid = engine.start("node-updates", make_artifact(size=2048),
                           policy=RolloutPolicy(soak=0.05, device_timeout=10, health_window=3))
        with trio.fail_after(30):
            while engine.status(rid)[0]["state"] != "completed":
                await trio.sleep(0.05)
        kinds = [e.kind for e in events if e.kind != "rollout.state"]
        assert kinds[0] == "rollout.started" and kinds[-1] == "rollout.completed"
        with trio.fail_after(5):   # state changes as such, for UIs that only track states
            while [e.data["state"] for e in events if e.kind == "rollout.state"][-1:] != ["completed"]:
                await trio.sleep(0.02)
        assert kinds.count("rollout.device") == 20
        last = [e for e in events if e.kind == "rollout.completed"][-1].data
        assert (last["rollout"], last["state"], last["done"], last["total"]) == (rid, "completed", 20, 20)
        assert (host.state_dir / "updates.sqlite").is_file()
        nursery.cancel_scope.cancel()


async def test_operator_pauses_and_resumes_a_live_rollout_through_the_websocket_api(sitegate_site, publisher_key,
                                                                                     make_artifact):
    from sitegate.testing import api_client
    key = publisher_key.verify_key.encode().hex()
    site = f"""
    site: test/updates
    entries:
      - id: node-updates
        domain: mqttsn_update
        config: {{port: 0, trusted_keys: ["{key}"], retry: 0.3, request_timeout: 3}}
    """
    async with sitegate_site(site) as host, trio.open_nursery() as nursery:
        engine = await start_rollouts(host, nursery)
        handler = host.entry("node-updates").data["update_handler"]
        fleet = Fleet(20, ("127.0.0.1", handler.port), [key], hardware=["th-v1"])
        await nursery.start(fleet.run)
        with trio.fail_after(10):
            while len(handler.devices) < 20:
                await trio.sleep(0.01)
        rid = engine.start("node-updates", make_artifact(size=2048),
                           policy=RolloutPolicy(waves=(10, 50, 100), soak=1.0, device_timeout=10, health_window=3))
        async with api_client(host, role="admin") as ws:
            paused = await ws.call("rollout_pause", rollout_id=rid)
            assert paused["success"] and paused["result"]["state"] == "paused", paused
            status = await ws.call("rollout_status", rollout_id=rid)
            assert status["result"][0]["state"] == "paused"
            again = await ws.call("rollout_pause", rollout_id=rid)
            assert again["error"]["code"] == "not_allowed" and "not running" in again["error"]["message"]
            resumed = await ws.call("rollout_resume", rollout_id=rid)
            assert resumed["result"]["state"] == "running"
        with trio.fail_after(60):
            while engine.status(rid)[0]["state"] != "completed":
                await trio.sleep(0.05)
        assert engine.status(rid)[0]["succeeded"] == 20
        nursery.cancel_scope.cancel()
