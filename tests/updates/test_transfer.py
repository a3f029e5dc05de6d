"""Chunked transfer with resume: power loss mid-transfer, an interrupted stage, config deltas."""

from __future__ import annotations

import json
import time

import trio

from sitegate.updates import sign_update


async def test_power_loss_mid_transfer_keeps_old_bank_and_resumes(lab, make_artifact):
    artifact = make_artifact(size=64 * 1024)
    async with lab(3) as (handler, fleet):
        node = fleet.nodes["n0001"]
        node.power_loss_at, node.power_off_for = 0.5, 0.4
        seen_during_outage = []

        def progress(done, total):
            if node.power_losses and not seen_during_outage:
                seen_during_outage.append(node.slots["firmware"].active["version"])

        await handler.stage("n0001", artifact, progress)
        assert node.power_losses == 1 and node.boots == 2
        assert seen_during_outage == ["1.0.0"]                     # booted its old bank after the outage
        assert node.slots["firmware"].active["version"] == "1.0.0"
        # Resumed, not restarted: every byte was acknowledged exactly once.
        assert handler.counters["bytes_staged"] == len(artifact.payload)
        await handler.activate("n0001")
        assert await handler.health_check("n0001", time.time() + 2)
        await handler.commit("n0001")
        assert node.slots["firmware"].active["version"] == "1.1.0"


async def test_interrupted_stage_resumes_from_the_nodes_offset(lab, make_artifact):
    artifact = make_artifact(size=64 * 1024)
    async with lab(3) as (handler, fleet):
        node = fleet.nodes["n0002"]
        with trio.move_on_after(10) as cs:
            def stop_halfway(done, total):
                if done >= total // 2:
                    cs.cancel()
            await handler.stage("n0002", artifact, stop_halfway)
        had = node.status()["staged"]
        assert 0 < had < len(artifact.payload)
        offsets = []
        await handler.stage("n0002", artifact, lambda done, total: offsets.append(done))
        assert offsets[0] > had - handler.window * handler.chunk_size   # went on from where the node was
        await handler.activate("n0002")
        assert node.slots["firmware"].trial


async def test_power_loss_while_on_trial_reverts_to_old_bank(lab, make_artifact):
    async with lab(3) as (handler, fleet):
        node = fleet.nodes["n0000"]
        await handler.stage("n0000", make_artifact())
        await handler.activate("n0000")
        assert node.slots["firmware"].trial
        await node.lose_power(0.05)
        assert node.slots["firmware"].active["version"] == "1.0.0" and node.rolled_back_by_itself == 1


async def test_golden_config_drift_detected_and_delta_pushed(lab, publisher_key):
    from plugins.mqttsn_update.golden import drift
    desired = {"interval": 30, "threshold": 4.5, "unit": "degC"}
    async with lab(4, fleet_kw={"config": {"interval": 60, "debug": True, "unit": "degC"}}) as (handler, fleet):
        delta = drift(handler.inventory(), desired)
        assert delta["n0000"] == {"interval": 30, "threshold": 4.5, "debug": None}   # only what differs
        payload = json.dumps(desired, sort_keys=True, separators=(",", ":")).encode()
        artifact = sign_update(payload, publisher_key, kind="config", name="th-node-config", version="2",
                               release_counter=2, hardware_ids=["th-v1", "th-v2", "th-v3"])
        for device in ("n0000", "n0001"):
            await handler.stage(device, artifact)
            await handler.activate(device)
            assert await handler.health_check(device, time.time() + 2)
            await handler.commit(device)
        assert fleet.nodes["n0000"].config == desired
        with trio.fail_after(5):
            while "n0000" in drift(handler.inventory(), desired):
                await trio.sleep(0.01)
        assert set(drift(handler.inventory(), desired)) == {"n0002", "n0003"}
        # A delta that does not give the signed config is refused by the node.
        other = sign_update(b'{"interval":1}', publisher_key, kind="config", name="th-node-config", version="3",
                            release_counter=3, hardware_ids=["th-v1"])
        from plugins.mqttsn_update.wire import T_CONFIG, T_OFFER
        from sitegate.updates import UpdateRefused
        import pytest
        await handler._json_request("n0003", T_OFFER, dict(other.envelope))
        with pytest.raises(UpdateRefused, match="hash"):
            await handler._json_request("n0003", T_CONFIG, {"delta": {"interval": 2}})


async def test_drift_from_golden_config_raised_once_per_change(lab):
    raised = []
    desired = {"interval": 30}
    async with lab(3, golden=desired, emit=lambda kind, **kw: raised.append((kind, kw["device"], kw.get("delta"))),
                   fleet_kw={"config": {"interval": 60}, "keepalive": 0.05}) as (handler, fleet):
        with trio.fail_after(5):
            while sum(r[0] == "config.drift" for r in raised) < 3:
                await trio.sleep(0.01)
        node = fleet.nodes["n0000"]
        with trio.fail_after(5):   # several keep-alives later: still one event per node
            hellos = handler.counters["datagrams_in"]
            while handler.counters["datagrams_in"] < hellos + 12:
                await trio.sleep(0.01)
        drift = [r for r in raised if r[0] == "config.drift"]
        assert sorted(d for _, d, _ in drift) == ["n0000", "n0001", "n0002"]
        assert drift[0][2] == {"interval": 30}
        assert node.config == {"interval": 60}
