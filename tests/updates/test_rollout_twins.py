"""Rollouts keep the device twins true: versions the nodes report reach their twins, and only theirs.

A real site (mqttsn_update entry, twins, rollout engine, WebSocket API) and simulated
A/B-bank nodes over MQTT-SN on loopback. Twin ids are `<entry id>.<node id>`.
"""

from __future__ import annotations

import json
import time

import trio

from examples.devices.fleet import Fleet
from sitegate.testing import api_client, wait_for
from sitegate.updates import sign_update
from sitegate.updates.policy import AbortCriteria, RolloutPolicy

HARDWARE = ["th-v1", "th-v2", "th-v3"]
ENTRY = "node-updates"


def site_text(key: str) -> str:
    return f"""
    site: test/updates-twins
    entries:
      - id: {ENTRY}
        domain: mqttsn_update
        config: {{port: 0, trusted_keys: ["{key}"], retry: 0.3, request_timeout: 3}}
    """


async def start_fleet(host, nursery, key: str, count: int, **kw) -> Fleet:
    handler = host.entry(ENTRY).data["update_handler"]
    fleet = Fleet(count, ("127.0.0.1", handler.port), [key], hardware=HARDWARE, **kw)
    await nursery.start(fleet.run)
    await wait_for(lambda: len(handler.devices) == count, 10, what=f"{count} nodes to say HELLO")
    return fleet


async def completed(engine, rid: str, states=("completed",), timeout: float = 40) -> dict:
    with trio.fail_after(timeout):
        while (r := engine.status(rid)[0])["state"] not in ("completed", "paused", "aborted"):
            await trio.sleep(0.05)
    assert r["state"] in states, r
    return r


async def test_twins_follow_firmware_and_config_rollouts_and_subscribers_see_it(sitegate_site, publisher_key,
                                                                              make_artifact):
    key = publisher_key.verify_key.encode().hex()
    async with sitegate_site(site_text(key)) as host, trio.open_nursery() as nursery:
        twins, engine = host.services["twins"], host.services["rollouts"]
        # A twin the handler never hears of (a node retired long ago), with versions of its own.
        twins.report(f"{ENTRY}.n9999", hw_version="th-v9", fw_version="0.9.0", config_version="7")
        gone = twins.get(f"{ENTRY}.n9999")
        fleet = await start_fleet(host, nursery, key, 12, config={"interval": 60})
        ids = {f"{ENTRY}.{n}": node for n, node in fleet.nodes.items()}

        # 1. Seen by the handler: hardware id, firmware and config version reach each node's twin.
        def twin_is(field: str, want) -> bool:
            return all((twins.get(d) or {}).get(field) == want(node) for d, node in ids.items())
        await wait_for(lambda: twin_is("hw_version", lambda node: node.hw), 5, what="hw_version in every twin")
        await wait_for(lambda: twin_is("fw_version", lambda node: "1.0.0"), 5, what="fw_version in every twin")
        await wait_for(lambda: twin_is("reported_config", lambda node: "0"), 5, what="config version in every twin")
        assert twins.get(f"{ENTRY}.n0004")["entry"] == ENTRY

        progress = []
        host.events.add_callback(lambda e: progress.append(e) if e.kind == "rollout.device" else None)
        async with api_client(host, role="viewer") as ws:
            sub = (await ws.call("subscribe_events", kinds=["device.*"]))["id"]

            async def device_events(until) -> list[dict]:
                seen: list[dict] = []
                with trio.fail_after(10):
                    while not until(seen):
                        seen.append(await ws.event(sub, timeout=10))
                return seen

            # 2. A firmware rollout to 100 %: every twin shows the new version, as soon as it is committed.
            rid = engine.start(ENTRY, make_artifact(version="1.1.0", size=2048),
                               policy=RolloutPolicy(soak=0.05, device_timeout=10, health_window=3))
            assert (await completed(engine, rid))["succeeded"] == 12
            assert {d: twins.get(d)["fw_version"] for d in ids} == {d: "1.1.0" for d in ids}
            assert {e.data["twin"] for e in progress} == set(ids)   # progress events name the twin too
            assert {d: twins.get(d)["hw_version"] for d in ids} == {d: n.hw for d, n in ids.items()}
            declared = await device_events(lambda seen: {e["device"] for e in seen
                                                         if e["kind"] == "device.declared"} >= set(ids))
            dev = (await ws.call("get_device", device_id=f"{ENTRY}.n0007"))["result"]
            assert (dev["fw_version"], dev["hw_version"]) == ("1.1.0", fleet.nodes["n0007"].hw)

            # 3. A config rollout: the twins' reported config becomes its version, raising device.reported.
            twins.set_desired(f"{ENTRY}.n0003", "2")
            desired = {"interval": 30, "unit": "degC"}
            config = sign_update(json.dumps(desired, sort_keys=True, separators=(",", ":")).encode(), publisher_key,
                                 kind="config", name="th-node-config", version="2", release_counter=2,
                                 hardware_ids=HARDWARE)
            rid = engine.start(ENTRY, config, policy=RolloutPolicy(soak=0.05, device_timeout=10, health_window=3))
            assert (await completed(engine, rid))["succeeded"] == 12
            assert all(n.config == desired for n in fleet.nodes.values())
            assert {d: twins.get(d)["reported_config"] for d in ids} == {d: "2" for d in ids}
            assert twins.get(f"{ENTRY}.n0003")["drift"] is False
            reported = await device_events(lambda seen: {e["device"] for e in seen
                                                         if e["kind"] == "device.reported"} >= set(ids))
            ev = [e for e in reported if e["kind"] == "device.reported" and e["device"] == f"{ENTRY}.n0003"][-1]
            assert (ev["data"]["reported_config"], ev["data"]["drift"]) == ("2", False)
            assert all(n.slots["firmware"].active["version"] == "1.1.0" for n in fleet.nodes.values())
            assert {d: twins.get(d)["fw_version"] for d in ids} == {d: "1.1.0" for d in ids}

        # 4. The twin nobody reported on is as it was, and no event named it.
        now = twins.get(f"{ENTRY}.n9999")
        assert {k: now[k] for k in ("hw_version", "fw_version", "reported_config", "last_seen")} == \
            {k: gone[k] for k in ("hw_version", "fw_version", "reported_config", "last_seen")}
        assert (now["fw_version"], now["reported_config"]) == ("0.9.0", "7")
        assert not [e for e in declared + reported if e["device"] == f"{ENTRY}.n9999"]
        nursery.cancel_scope.cancel()


async def test_a_failed_canary_rolled_back_keeps_its_old_version_in_the_twin(sitegate_site, publisher_key,
                                                                            make_artifact):
    key = publisher_key.verify_key.encode().hex()
    async with sitegate_site(site_text(key)) as host, trio.open_nursery() as nursery:
        twins, engine = host.services["twins"], host.services["rollouts"]
        fleet = await start_fleet(host, nursery, key, 12)
        ids = [f"{ENTRY}.{n}" for n in fleet.nodes]
        await wait_for(lambda: all((twins.get(d) or {}).get("fw_version") == "1.0.0" for d in ids), 5,
                       what="fw_version in every twin")
        # The new firmware boots and runs on trial (its HELLO says 1.1.0), then fails its health check:
        # the gateway rolls it back. The twin must never have shown 1.1.0.
        for node in fleet.nodes.values():
            def sicken(node=node, real=node._activate):
                async def activate(slot, kind):
                    answer = await real(slot, kind)
                    node.fail_health = True
                    return answer
                return activate
            node._activate = sicken()
        shown: dict[str, set] = {d: set() for d in ids}
        host.events.add_callback(lambda e: shown[e.device].add(host.devices.devices[e.device].fw_version)
                                 if e.kind == "device.declared" and e.device in shown else None)
        policy = RolloutPolicy(soak=0.05, device_timeout=10, health_window=3,
                               abort=(AbortCriteria(("failed", "timed_out"), 50.0, 2),))
        rid = engine.start(ENTRY, make_artifact(version="1.1.0", size=2048), policy=policy)
        r = await completed(engine, rid, states=("paused",))
        canary = {t["device"] for t in engine.store.targets(rid, wave=0)}
        assert len(canary) == 3 and {d["device"] for d in r["failed_devices"]} == canary
        assert all(d["status"] == "rolled_back" for d in r["failed_devices"])
        for node in canary:
            assert fleet.nodes[node].slots["firmware"].active["version"] == "1.0.0"
            assert fleet.nodes[node].activations == 1 and fleet.nodes[node].rolled_back_by_itself == 0
        # The handler heard the rollback (its answer and the HELLO after it); the twins show it.
        assert all(host.entry(ENTRY).data["update_handler"].devices[n]["version"] == "1.0.0" for n in canary)
        assert {d: twins.get(d)["fw_version"] for d in ids} == {d: "1.0.0" for d in ids}
        assert not any("1.1.0" in versions for versions in shown.values()), shown
        nursery.cancel_scope.cancel()


async def test_a_commit_reaches_the_twin_even_when_the_nodes_hello_is_lost(lab, make_artifact, publisher_key):
    told: dict[str, tuple] = {}

    def on_status(device, hardware_id, fw_version, config_version):
        told[device] = (hardware_id, fw_version, config_version)
        return True
    async with lab(3, on_status=on_status) as (handler, fleet):
        assert told == {n: (node.hw, "1.0.0", "0") for n, node in fleet.nodes.items()}
        node = fleet.nodes["n0001"]

        async def silent() -> None:   # every HELLO from now on is lost on the radio link
            pass
        node.hello = silent
        artifact = make_artifact(version="1.1.0", size=2048)
        await handler.stage("n0001", artifact)
        await handler.activate("n0001")
        assert await handler.health_check("n0001", time.time() + 3)
        await handler.commit("n0001")
        assert told["n0001"] == (node.hw, "1.1.0", "0")
        # A config committed the same way: the answer to the commit carries the version.
        payload = b'{"interval":5}'
        config = sign_update(payload, publisher_key, kind="config", name="th-node-config", version="3",
                             release_counter=3, hardware_ids=HARDWARE)
        await handler.stage("n0001", config)
        await handler.activate("n0001")
        await handler.commit("n0001")
        assert told["n0001"] == (node.hw, "1.1.0", "3")
        assert told["n0000"] == (fleet.nodes["n0000"].hw, "1.0.0", "0")
