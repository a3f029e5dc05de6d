"""Rollouts to 200 simulated nodes: good firmware everywhere, bad firmware stopped at the canary."""

from __future__ import annotations

import trio

from sitegate.updates.policy import AbortCriteria, RolloutPolicy, plan_waves
from sitegate.updates.rollout import RolloutEngine
from sitegate.updates.store import RolloutStore

FAST = dict(soak=0.2, device_timeout=20, health_window=3, max_concurrent=40)


async def wait_state(engine, rollout_id, states, timeout=50):
    with trio.fail_after(timeout):
        while (r := engine.status(rollout_id)[0])["state"] not in states:
            await trio.sleep(0.05)
    return r


def engine_for(tmp_path, handler, events):
    store = RolloutStore(tmp_path / "state")
    return RolloutEngine(store, lambda entry: handler if entry == "nodes" else None, emit=events.append, poll=0.1)


async def test_good_firmware_reaches_every_device(lab, make_artifact, tmp_path):
    events = []
    async with lab(200) as (handler, fleet), trio.open_nursery() as nursery:
        engine = engine_for(tmp_path, handler, events)
        await nursery.start(engine.run)
        rid = engine.start("nodes", make_artifact(size=4096), policy=RolloutPolicy(**FAST))
        r = await wait_state(engine, rid, ("completed", "paused"))
        assert r["state"] == "completed", r
        assert r["succeeded"] == 200 and r["failed"] == 0
        assert fleet.summary()["versions"] == {"1.1.0": 200}
        assert all(not n.slots["firmware"].trial for n in fleet.nodes.values())   # committed, not on trial
        # Waves went 1% (but one per hardware id) -> 10% -> 50% -> 100%, each soaked.
        waves = [e for e in events if e.kind == "rollout.wave"]
        assert len(waves) == 4
        assert "(3 devices)" in waves[0].message and "(17 devices)" in waves[1].message
        assert [e.data["done"] for e in events if e.kind == "rollout.completed"] == [200]
        log = engine.store.audit_log(rid, device="n0000")
        assert [a["action"] for a in log] == ["device_start", "staged", "activated", "healthy", "device_succeeded"]
        nursery.cancel_scope.cancel()


async def test_bad_firmware_aborts_after_canary_which_rolls_back_by_itself(lab, make_artifact, tmp_path):
    events = []
    async with lab(200) as (handler, fleet), trio.open_nursery() as nursery:
        for node in fleet.nodes.values():
            node.fail_health = True     # this firmware breaks every node's self-test
        engine = engine_for(tmp_path, handler, events)
        await nursery.start(engine.run)
        policy = RolloutPolicy(**FAST, abort=(AbortCriteria(("failed", "timed_out"), 50.0, 2),))
        rid = engine.start("nodes", make_artifact(), policy=policy)
        r = await wait_state(engine, rid, ("paused", "completed"))
        assert r["state"] == "paused" and "abort criteria" in r["reason"]
        canary = {t["device"] for t in engine.store.targets(rid, wave=0)}
        assert len(canary) == 3 and {fleet.nodes[d].hw for d in canary} == {"th-v1", "th-v2", "th-v3"}
        assert {d["device"] for d in r["failed_devices"]} == canary
        assert all(d["status"] == "rolled_back" for d in r["failed_devices"])
        for device in canary:
            node = fleet.nodes[device]
            assert node.rolled_back_by_itself == 1            # the node reverted before the gateway asked
            assert node.slots["firmware"].active["version"] == "1.0.0"
        untouched = [n for d, n in fleet.nodes.items() if d not in canary]
        assert not any(n.touched for n in untouched)          # no other device got a single update message
        # Nothing continues by itself.
        with trio.move_on_after(0.5):
            await wait_state(engine, rid, ("running", "completed"))
        assert engine.status(rid)[0]["state"] == "paused"
        assert any(e.kind == "rollout.paused" for e in events)
        nursery.cancel_scope.cancel()


async def test_operator_pause_stops_new_devices_and_resume_finishes(lab, make_artifact, tmp_path):
    events = []
    async with lab(200) as (handler, fleet), trio.open_nursery() as nursery:
        engine = engine_for(tmp_path, handler, events)
        await nursery.start(engine.run)
        rid = engine.start("nodes", make_artifact(size=2048), policy=RolloutPolicy(**{**FAST, "soak": 1.0}))
        # Pause during the soak after the canary: the next wave never starts.
        with trio.fail_after(30):
            while not any(e.kind == "rollout.soaking" for e in events):
                await trio.sleep(0.02)
        engine.pause(rid)
        r = await wait_state(engine, rid, ("paused",))
        assert r["succeeded"] == 3 and r["pending"] == 197
        with trio.move_on_after(1.5):     # well past the soak: still nothing may start
            await wait_state(engine, rid, ("running",))
        assert engine.status(rid)[0]["pending"] == 197
        engine.resume(rid)
        r = await wait_state(engine, rid, ("completed",), timeout=50)
        assert r["succeeded"] == 200
        actions = [a["action"] for a in engine.store.audit_log(rid) if a["device"] is None]
        assert actions[:3] == ["create", "plan", "wave_start"] and "pause" in actions and "resume" in actions
        nursery.cancel_scope.cancel()


async def test_resume_after_abort_counts_failures_anew_and_offline_nodes_time_out(lab, make_artifact, tmp_path):
    events = []
    async with lab(200) as (handler, fleet), trio.open_nursery() as nursery:
        engine = engine_for(tmp_path, handler, events)
        await nursery.start(engine.run)
        # Take the canary offline: its devices time out, the abort trips on timeouts.
        policy = RolloutPolicy(**{**FAST, "device_timeout": 2},
                               abort=(AbortCriteria(("timed_out",), 50.0, 3),))
        inventory = [(d, s["hardware_id"]) for d, s in handler.inventory().items()]
        canary = [d for d, _, w in plan_waves("r-off", inventory, policy) if w == 0]
        for device in canary:
            fleet.nodes[device].offline = True
        engine.start("nodes", make_artifact(size=1024), policy=policy, rollout_id="r-off")
        r = await wait_state(engine, "r-off", ("paused",))
        assert r["failures"] == {"timed_out": 3} and "timed_out" in r["reason"]
        # The operator decides the canary's network was at fault and resumes: the rest goes through.
        engine.resume("r-off")
        r = await wait_state(engine, "r-off", ("completed", "paused"))
        assert r["state"] == "completed" and r["succeeded"] == 197
        nursery.cancel_scope.cancel()


async def test_a_second_engine_on_the_same_state_folder_refuses_to_run(tmp_path):
    import pytest
    first = RolloutEngine(RolloutStore(tmp_path / "state"), lambda entry: None)
    second = RolloutEngine(RolloutStore(tmp_path / "state"), lambda entry: None)
    async with trio.open_nursery() as nursery:
        await nursery.start(first.run)
        with pytest.raises(RuntimeError, match="another rollout engine already runs"):
            await second.run()
        nursery.cancel_scope.cancel()


async def test_device_that_turns_sick_during_the_soak_is_rolled_back_and_counted(lab, make_artifact, tmp_path):
    events = []
    async with lab(200) as (handler, fleet), trio.open_nursery() as nursery:
        engine = engine_for(tmp_path, handler, events)
        await nursery.start(engine.run)
        policy = RolloutPolicy(**{**FAST, "soak": 1.0}, abort=(AbortCriteria(threshold_pct=30.0, min_executed=3),))
        engine.start("nodes", make_artifact(size=1024), policy=policy, rollout_id="r-soak")
        with trio.fail_after(20):
            while not any(e.kind == "rollout.soaking" for e in events):
                await trio.sleep(0.01)
        canary = [t["device"] for t in engine.store.targets("r-soak", wave=0)]
        sick = fleet.nodes[canary[0]]
        sick.fail_health = True            # fine at commit, sick a moment later
        r = await wait_state(engine, "r-soak", ("paused", "completed"))
        assert r["state"] == "paused" and "1 of 3 executed" in r["reason"]
        assert r["failed_devices"] == [{"device": sick.id, "status": "rolled_back", "failure": "failed", "step": "soak",
                                        "detail": f"{sick.id}: unhealthy at the end of the soak; "
                                                  "rolled back to the previous bank"}]
        assert sick.slots["firmware"].active["version"] == "1.0.0"
        assert engine.status("r-soak")[0]["pending"] == 197      # the next wave never started
        nursery.cancel_scope.cancel()
