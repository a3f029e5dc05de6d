"""One twin per physical node, and config rollouts set the desired config.

A real site: an `mqttsn` adapter entry (`sensors`) that takes the nodes' readings from
the third-party `mqtt_sn_pub` client, and an `mqttsn_update` entry with
`devices_of: sensors`, whose simulated A/B-bank nodes (examples/devices) answer on
loopback. A node's firmware, hardware id and config version land on the adapter's
twin `sensors.<node>`, next to its readings. Config rollouts set each twin's desired
config when the device's step starts: drift shows until the node commits it, and stays
on a node that was rolled back.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import trio

from examples.devices.fleet import Fleet
from sitegate.config.validate import check_site
from sitegate.loader import DevFolderSource, Loader
from sitegate.testing import wait_for, write_site
from sitegate.testing.harness import FIRST_PARTY_PLUGINS
from sitegate.updates import sign_update
from sitegate.updates.policy import RolloutPolicy
from tests.updates.test_rollout_twins import completed

HARDWARE = ["th-v1", "th-v2", "th-v3"]
MQTT_SN_PUB = Path(sys.executable).parent / "mqtt_sn_pub"   # the mqtt-sn-12 client's command


def site_text(key: str, devices_of: str | None = "sensors") -> str:
    option = f", devices_of: {devices_of}" if devices_of else ""
    return f"""
    site: test/twin-merge
    entries:
      - id: sensors
        domain: mqttsn
        config:
          host: 127.0.0.1
          port: 0
          topics:
            - {{topic: "th/+/temp", device: "{{1}}", point: temp}}
            - {{topic: "th/+/hum", device: "{{1}}", point: humidity}}
      - id: node-updates
        domain: mqttsn_update
        config: {{port: 0, trusted_keys: ["{key}"], retry: 0.3, request_timeout: 3{option}}}
    """


async def start_fleet(host, nursery, key: str, count: int) -> Fleet:
    handler = host.entry("node-updates").data["update_handler"]
    fleet = Fleet(count, ("127.0.0.1", handler.port), [key], hardware=HARDWARE)
    await nursery.start(fleet.run)
    await wait_for(lambda: len(handler.devices) == count, 10, what=f"{count} nodes to say HELLO")
    return fleet


async def send_reading(host, node: str, point: str, value: float) -> None:
    """A node publishes one reading through the adapter (QoS 1: returns once the pipeline has it)."""
    gw = host.entry("sensors").data["gateway"]
    port = await wait_for(lambda: gw.address and gw.address[1], what="the mqttsn gateway listening")
    topic = f"th/{node}/{'temp' if point == 'temp' else 'hum'}"
    await trio.run_process([str(MQTT_SN_PUB), "-h", "127.0.0.1", "-p", str(port), "-i", node, "-t", topic,
                            "-m", str(value), "-q", "1"], capture_stdout=True, capture_stderr=True)


async def test_a_node_has_one_twin_with_its_readings_and_its_firmware(sitegate_site, publisher_key, make_artifact):
    key = publisher_key.verify_key.encode().hex()
    async with sitegate_site(site_text(key)) as host, trio.open_nursery() as nursery:
        twins, engine = host.services["twins"], host.services["rollouts"]
        await send_reading(host, "n0001", "temp", 21.5)     # before the update entry heard of it
        fleet = await start_fleet(host, nursery, key, 6)
        ids = {f"sensors.{n}": node for n, node in fleet.nodes.items()}
        await wait_for(lambda: all((twins.get(d) or {}).get("fw_version") == "1.0.0" for d in ids), 5,
                       what="fw_version on every sensors twin")
        progress = []
        host.events.add_callback(lambda e: progress.append(e) if e.kind == "rollout.device" else None)

        rid = engine.start("node-updates", make_artifact(version="1.1.0", size=2048),
                           policy=RolloutPolicy(soak=0.05, device_timeout=10, health_window=3))
        assert (await completed(engine, rid))["succeeded"] == 6
        await send_reading(host, "n0001", "humidity", 40.5)  # a new point: the adapter declares the device again

        # One twin per node, owned by the adapter entry, with firmware, hardware and config version.
        assert {t["id"] for t in twins.list()} == set(ids)
        assert {(d, t["entry"], t["fw_version"], t["hw_version"], t["reported_config"])
                for d in ids for t in [twins.get(d)]} == \
            {(d, "sensors", "1.1.0", node.hw, "0") for d, node in ids.items()}
        # ... and the readings of the node that sent some, with the points the adapter declared.
        n1 = twins.get("sensors.n0001")
        assert (n1["points"]["temp"]["value"], n1["points"]["humidity"]["value"]) == (21.5, 40.5)
        assert n1["points"]["temp"]["datatype"] == "float"
        declared = host.devices.devices["sensors.n0001"]
        assert declared.entry == "sensors" and {p.name for p in declared.points} == {"temp", "humidity"}
        assert not [d for d in host.devices.devices if d.startswith("node-updates.")]
        # A node that never sent a reading has its twin too, with versions and no points yet.
        assert twins.get("sensors.n0004")["points"] == {}
        # `sitegate diagnostics SITE DEVICE` (the same bundle) shows the twin beside what the adapter declared.
        from sitegate.diagnostics import bundle
        shown = bundle(host, "sensors.n0001")["device"]
        assert shown["info"]["entry"] == "sensors"
        assert (shown["twin"]["fw_version"], shown["twin"]["hw_version"]) == ("1.1.0", ids["sensors.n0001"].hw)
        assert bundle(host, "sensors.n0004")["device"]["twin"]["fw_version"] == "1.1.0"
        # Progress events name the merged twin; rollouts keep the handler's ids.
        assert sorted(e.data["twin"] for e in progress) == sorted(ids)
        assert sorted(e.device for e in progress) == sorted(fleet.nodes)
        nursery.cancel_scope.cancel()


async def test_a_config_rollout_sets_desired_config_drift_shows_until_committed(sitegate_site, publisher_key):
    key = publisher_key.verify_key.encode().hex()
    async with sitegate_site(site_text(key, devices_of=None)) as host, trio.open_nursery() as nursery:
        twins, engine = host.services["twins"], host.services["rollouts"]
        fleet = await start_fleet(host, nursery, key, 6)
        twin = {n: f"node-updates.{n}" for n in fleet.nodes}
        await wait_for(lambda: all((twins.get(t) or {}).get("reported_config") == "0" for t in twin.values()), 5,
                       what="config version 0 on every twin")
        assert all(twins.get(t)["desired_config"] is None for t in twin.values())

        # What each twin showed while its node had the new config on trial (activated, not committed).
        during: dict[str, tuple] = {}
        sick: list[str] = []     # the first node to activate fails its self-test (reverts), then is rolled back
        for n, node in fleet.nodes.items():
            def watch(n=n, node=node, real=node._activate):
                async def activate(slot, kind):
                    if not sick:
                        sick.append(n)
                        node.fail_health = True
                    answer = await real(slot, kind)
                    t = twins.get(twin[n])
                    during[n] = (t["desired_config"], t["reported_config"], t["drift"])
                    return answer
                return activate
            node._activate = watch()

        desired = {"interval": 30}
        config = sign_update(json.dumps(desired, sort_keys=True, separators=(",", ":")).encode(), publisher_key,
                             kind="config", name="th-node-config", version="2", release_counter=2,
                             hardware_ids=HARDWARE)
        rid = engine.start("node-updates", config, policy=RolloutPolicy(waves=(1.0, 100.0), soak=0.05,
                                                                           device_timeout=10, health_window=3))
        await completed(engine, rid, states=("paused",))       # the sick canary trips the abort criteria
        canary = {t["device"] for t in engine.store.targets(rid, wave=0)}
        sick = sick[0]
        assert sick in canary and len(canary) == 3
        assert {n: during[n] for n in canary} == {n: ("2", "0", True) for n in canary}
        for n in fleet.nodes:
            t = twins.get(twin[n])
            if n == sick:    # rolled back: it reports 0, the site still wants 2 (as a shadow's desired state)
                assert (t["desired_config"], t["reported_config"], t["drift"]) == ("2", "0", True)
            elif n in canary:
                assert (t["desired_config"], t["reported_config"], t["drift"]) == ("2", "2", False)
            else:            # not reached yet: nothing asked of it
                assert (t["desired_config"], t["reported_config"], t["drift"]) == (None, "0", False)

        engine.resume(rid)
        assert (await completed(engine, rid))["succeeded"] == 5
        assert {n: during[n] for n in fleet.nodes if n != sick} == {n: ("2", "0", True) for n in fleet.nodes
                                                                     if n != sick}
        assert {n: (twins.get(twin[n])["desired_config"], twins.get(twin[n])["drift"]) for n in fleet.nodes} == \
            {n: ("2", n == sick) for n in fleet.nodes}
        nursery.cancel_scope.cancel()


async def test_devices_of_must_name_an_mqttsn_entry_with_file_and_line(tmp_path, sitegate_site, publisher_key):
    key = publisher_key.verify_key.encode().hex()
    loader = Loader(DevFolderSource(FIRST_PARTY_PLUGINS, warn=False))
    for target, problem in (("sensor", "no entry 'sensor' in the site; mqttsn entries: sensors"),
                            ("node-updates", "entry 'node-updates' has domain mqttsn_update, not mqttsn")):
        path = write_site(tmp_path, site_text(key, devices_of=target), name=f"{target}.yaml")
        line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if "devices_of" in text)
        _, issues = check_site(path, loader)
        assert [str(i) for i in issues] == [f"{path}:{line}: entries[1].config.devices_of: {problem}"]
    _, issues = check_site(write_site(tmp_path, site_text(key), name="good.yaml"), loader)
    assert issues == []

    # A site run without `sitegate check`: the entry does not start, saying the same.
    async with sitegate_site(site_text(key, devices_of="sensor")) as host:
        ctx = host.entry("node-updates")
        assert ctx.state.label == "setup_error", ctx.state
        path = tmp_path / "site.yaml"
        line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if "devices_of" in text)
        assert ctx.reason.endswith(f"{path}:{line}: entries[1].config.devices_of: no entry 'sensor' in the site; "
                                   "mqttsn entries: sensors"), ctx.reason


async def test_what_nodes_report_before_the_twin_registry_runs_reaches_it_when_it_starts(tmp_path, publisher_key):
    from sitegate.api import start_twins
    from sitegate.testing import running_site

    key = publisher_key.verify_key.encode().hex()
    async with running_site(tmp_path, site_text(key), services=False) as host, trio.open_nursery() as nursery:
        fleet = await start_fleet(host, nursery, key, 3)        # every HELLO comes before the registry
        assert "twins" not in host.services
        twins = await start_twins(host, nursery)
        ids = {f"sensors.{n}": node for n, node in fleet.nodes.items()}
        # Well before the nodes' next keep-alive HELLO (5 s): what they said at boot was kept.
        await wait_for(lambda: {d: ((twins.get(d) or {}).get("hw_version"), (twins.get(d) or {}).get("fw_version"))
                                for d in ids} == {d: (node.hw, "1.0.0") for d, node in ids.items()}, 2,
                       what="versions told before the registry ran on the twins")
        assert {d: twins.get(d)["reported_config"] for d in ids} == {d: "0" for d in ids}
        nursery.cancel_scope.cancel()


def test_devices_of_naming_an_entry_that_does_not_read_is_not_reported_twice(tmp_path, publisher_key):
    key = publisher_key.verify_key.encode().hex()
    text = site_text(key).replace("      - id: sensors\n        domain: mqttsn\n",
                                  "      - id: sensors\n        domain: mqttsn\n        disabled: maybe\n")
    path = write_site(tmp_path, text)
    _, issues = check_site(path, Loader(DevFolderSource(FIRST_PARTY_PLUGINS, warn=False)))
    assert len(issues) == 1 and "entries[0].disabled" in str(issues[0]), [str(i) for i in issues]
