"""Delivery through a running site: outages, poison messages, priorities, privacy, commit before ack."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import trio

from sitegate.testing import running_site, wait_for
from tests.dataplane.dp_helpers import FIXTURES, acked, sink_lines

FAST = "storage: {retry_initial: 10ms, retry_max: 50ms}\n"


def _delivered(path: Path) -> set[tuple[str, int]]:
    return {(l["device"], l["seq"]) for l in sink_lines(path)}


def _events(host, kind: str) -> list:
    return [e for e in host.events.recent if e.kind == kind]


async def test_reading_acknowledged_only_after_commit(tmp_path):
    site = f"""
        site: t
        entries:
          - {{id: src, domain: acklog, config: {{ack_path: {tmp_path}/ack, limit: 20}}}}
          - {{id: out, domain: filesink, config: {{path: {tmp_path}/out, down_flag: {tmp_path}/down}}}}
        routes:
          - {{from: ["src.*/*"], to: [out]}}
        """
    (tmp_path / "down").touch()     # nothing delivered: what is in the file was committed by the WAL
    async with running_site(tmp_path, site, plugin_dirs=[FIXTURES]) as host:
        await wait_for(lambda: len(acked(tmp_path / "ack")) >= 80, 10, what="all acknowledgements")
        plane = host.services["dataplane"]
        conn = sqlite3.connect(plane.wal.path)
        stored = set()
        for device, seq, n in conn.execute("SELECT device, seq, n FROM wal_records"):
            stored.update((device, seq + i) for i in range(n))
        conn.close()
        assert acked(tmp_path / "ack") <= stored
        assert not sink_lines(tmp_path / "out")


async def test_sink_outage_then_recovery_delivers_everything_in_order(tmp_path):
    down = tmp_path / "down"
    site = f"""
        site: t
        entries:
          - {{id: src, domain: acklog, config: {{ack_path: {tmp_path}/ack, limit: 300, interval: 0.002}}}}
          - {{id: out, domain: filesink, config: {{path: {tmp_path}/out, down_flag: {down}}}}}
        routes:
          - {{from: ["src.*/*"], to: [out], priority: critical}}
        """ + FAST
    async with running_site(tmp_path, site, plugin_dirs=[FIXTURES]) as host:
        await wait_for(lambda: len(sink_lines(tmp_path / "out")) >= 40, 10, what="first deliveries")
        down.touch()
        plane = host.services["dataplane"]
        await wait_for(lambda: plane.deliveries["out"].state == "offline", 10, what="sink offline")
        n_during = len(acked(tmp_path / "ack"))
        await wait_for(lambda: len(acked(tmp_path / "ack")) >= n_during + 200, 10, what="ingestion during outage")
        down.unlink()
        await wait_for(lambda: len(acked(tmp_path / "ack")) == 1200, 20, what="all produced")
        await wait_for(lambda: acked(tmp_path / "ack") <= _delivered(tmp_path / "out"), 20, what="backlog drained")
        states = [e.data["state"] for e in _events(host, "sink.state") if e.source == "out"]
        assert states[:3] == ["degraded", "offline", "online"], states
    lines = sink_lines(tmp_path / "out")
    for device in {l["device"] for l in lines}:
        seqs = [l["seq"] for l in lines if l["device"] == device]
        assert seqs == sorted(seqs), f"{device} out of order"
    assert len({l["msgId"] for l in lines}) == 1200


async def test_poison_reading_goes_to_dead_letters_and_the_rest_flows(tmp_path):
    site = f"""
        site: t
        entries:
          - {{id: src, domain: acklog, config: {{ack_path: {tmp_path}/ack, limit: 40, interval: 0}}}}
          - {{id: out, domain: filesink, config: {{path: {tmp_path}/out, poison: 7.0}}}}
        routes:
          - {{from: ["src.*/*"], to: [out]}}
        storage: {{normal_period: 200ms}}
        """
    async with running_site(tmp_path, site, plugin_dirs=[FIXTURES]) as host:
        want = {(d, s) for d, s in acked(tmp_path / "ack")}
        await wait_for(lambda: len(acked(tmp_path / "ack")) == 160, 10, what="all produced")
        want = acked(tmp_path / "ack")
        plane = host.services["dataplane"]
        await wait_for(lambda: plane.deliveries["out"].dead_letters == 4, 10, what="4 dead letters")
        await wait_for(lambda: len(_delivered(tmp_path / "out")) == 156, 10, what="the rest delivered")
        await plane.retain()
        rows = await plane.wal.call(lambda c: c.execute(
            "SELECT device, seq, n, error FROM dead_letters ORDER BY device, seq").fetchall())
    assert len(rows) == 4 and all(r[2] == 1 and "not acceptable" in r[3] for r in rows)
    # Round 7 of each device is poison (points a and b): exactly those, nothing else, is missing.
    assert want - _delivered(tmp_path / "out") == {(r[0], r[1]) for r in rows}
    assert {l["value"] for l in sink_lines(tmp_path / "out")}.isdisjoint({7.0})


async def test_critical_goes_out_at_once_while_low_waits_for_its_period(tmp_path):
    site = f"""
        site: t
        entries:
          - {{id: src, domain: acklog, config: {{ack_path: {tmp_path}/ack, limit: 5, points: [alarm, trend]}}}}
          - {{id: out, domain: filesink, config: {{path: {tmp_path}/out}}}}
        routes:
          - {{from: ["src.*/alarm"], to: [out], priority: critical}}
          - {{from: ["src.*/trend"], to: [out], priority: low}}
        storage: {{low_period: 1s}}
        """
    async with running_site(tmp_path, site, plugin_dirs=[FIXTURES]) as host:
        await wait_for(lambda: len(acked(tmp_path / "ack")) == 20, 10, what="all produced")
        await wait_for(lambda: sum(l["point"] == "alarm" for l in sink_lines(tmp_path / "out")) == 10, 0.5,
                       what="critical readings delivered within 0.5 s")
        assert not any(l["point"] == "trend" for l in sink_lines(tmp_path / "out")), "low delivered before its period"
        await wait_for(lambda: sum(l["point"] == "trend" for l in sink_lines(tmp_path / "out")) == 10, 3,
                       what="low readings after low_period")


async def test_restricted_points_reach_only_local_sinks_raw(tmp_path):
    site = f"""
        site: t
        plugins: {{window: ">=1"}}
        entries:
          - {{id: src, domain: acklog, config: {{ack_path: {tmp_path}/ack, limit: 30, points: [hr, temp, room], restricted: [hr]}}}}
          - {{id: cloud, domain: filesink, config: {{path: {tmp_path}/cloud}}}}
          - {{id: local, domain: filesink, config: {{path: {tmp_path}/local, local: true}}}}
        routes:
          - {{from: ["src.*/*"], to: [cloud, local], priority: critical}}
          - {{from: ["src.*/hr"], through: [{{window: {{every: 100ms, keep: [avg], grace: 0s}}}}], to: [cloud], priority: critical}}
        storage:
          privacy: {{restricted: ["*/room"]}}
        """
    async with running_site(tmp_path, site, plugin_dirs=[FIXTURES]) as host:
        await wait_for(lambda: len(acked(tmp_path / "ack")) == 180, 10, what="all produced")
        await wait_for(lambda: len(sink_lines(tmp_path / "local")) == 180, 10, what="local sink got everything")
        await wait_for(lambda: any(l["point"] == "hr.avg" for l in sink_lines(tmp_path / "cloud")), 10,
                       what="an aggregate of hr at the cloud sink")
        cloud_points = {l["point"] for l in sink_lines(tmp_path / "cloud")}
        assert "hr" not in cloud_points and "room" not in cloud_points
        assert "temp" in cloud_points and "hr.avg" in cloud_points
        assert host.services["dataplane"].deliveries["cloud"].withheld == 120


async def test_dlq_commands_list_show_replay_and_purge(tmp_path, capsys):
    from sitegate.cli import main

    def site(poison: str) -> str:
        return f"""
        site: t
        entries:
          - {{id: src, domain: acklog, config: {{ack_path: {tmp_path}/ack, limit: 12, interval: 0}}}}
          - {{id: out, domain: filesink, config: {{path: {tmp_path}/out, poison: {poison}}}}}
        routes:
          - {{from: ["src.*/*"], to: [out], priority: critical}}
        """
    async with running_site(tmp_path, site("7.0"), plugin_dirs=[FIXTURES]) as host:
        plane = host.services["dataplane"]
        await wait_for(lambda: plane.deliveries["out"].dead_letters == 4, 10, what="4 dead letters")
    site_file = tmp_path / "site.yaml"
    capsys.readouterr()
    assert main(["dlq", "list", str(site_file), "--json"]) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(listed) == 4 and {d["sink"] for d in listed} == {"out"}
    assert main(["dlq", "show", str(site_file), str(listed[0]["id"])]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["readings"][0]["msgId"] == f"t/{listed[0]['device']}/{listed[0]['seq']}"
    assert shown["readings"][0]["value"] == 7.0
    assert main(["dlq", "replay", str(site_file)]) == 1
    assert "say which dead letters" in capsys.readouterr().out
    assert main(["dlq", "replay", str(site_file), str(listed[0]["id"]), str(listed[1]["id"])]) == 0
    assert main(["dlq", "purge", str(site_file), "--all"]) == 0
    assert "purged 2" in capsys.readouterr().out
    # The destination accepts the value now: the replayed readings arrive with their original msgIds,
    # the acklog adapter having produced nothing new (limit reached before, new rounds are 1..12 again).
    replayed = {(d["device"], d["seq"]) for d in listed[:2]}
    (tmp_path / "site.yaml").write_text((tmp_path / "site.yaml").read_text().replace("poison: 7.0", "poison: -1"))
    async with running_site(tmp_path, path=site_file, plugin_dirs=[FIXTURES]) as host:
        await wait_for(lambda: replayed <= _delivered(tmp_path / "out"), 10, what="replayed readings delivered")
    assert main(["dlq", "list", str(site_file)]) == 0
    assert "no dead letters" in capsys.readouterr().out


async def test_a_deliver_call_that_never_returns_is_cancelled_and_retried(tmp_path):
    hang, down = tmp_path / "hang", tmp_path / "down"
    down.touch()         # calls fail at once until the short timeout is in place
    site = f"""
        site: t
        entries:
          - {{id: src, domain: acklog, config: {{ack_path: {tmp_path}/ack, limit: 3}}}}
          - {{id: out, domain: filesink, config: {{path: {tmp_path}/out, hang_flag: {hang}, down_flag: {down}}}}}
        routes:
          - {{from: ["src.*/*"], to: [out], priority: critical}}
        """ + FAST
    async with running_site(tmp_path, site, plugin_dirs=[FIXTURES]) as host:
        plane = host.services["dataplane"]
        plane.deliver_timeout = 0.2
        hang.touch()
        down.unlink()
        await wait_for(lambda: "did not return" in plane.sink_status().get("out", {}).get("last_error", ""), 5,
                       what="the hung call given up")
        hang.unlink()
        await wait_for(lambda: len(sink_lines(tmp_path / "out")) == 12, 5, what="delivered after the hang")
        assert plane.sink_status()["out"]["state"] == "online"
