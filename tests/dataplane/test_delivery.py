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
        # Every raw hr and room reading (2 devices x 30 rounds x 2 points) kept from the cloud sink.
        cloud = host.services["dataplane"].deliveries["cloud"]
        await wait_for(lambda: cloud.withheld == 120, 10, what="the cloud sink's whole share looked at")
        cloud_points = {l["point"] for l in sink_lines(tmp_path / "cloud")}
        assert "hr" not in cloud_points and "room" not in cloud_points
        assert "temp" in cloud_points and "hr.avg" in cloud_points
        await trio.sleep(0.3)
        assert cloud.withheld == 120


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


class _Pipelined:
    """Wraps a file sink so the data plane may keep 2 calls in flight: records each call's order of
    beginning (the file sink writes before its first checkpoint), and can hold one call open after
    it wrote (as a sink awaiting acknowledgements), or make it fail then."""

    def __init__(self, sink, hold: int):
        self.sink, self.deliver_inner, self.hold = sink, sink.deliver, hold
        self.calls = 0
        self.active = 0
        self.most = 0
        self.release = trio.Event()
        self.fail_held = False
        self.held_began = trio.Event()
        self.after_held_done = trio.Event()
        self.held_first: tuple[str, int] | None = None     # (device, seq) of the held call's first batch
        sink.concurrent_deliveries = 2
        sink.deliver = self.deliver

    async def deliver(self, batches):
        self.calls += 1
        n = self.calls
        self.active += 1
        self.most = max(self.most, self.active)
        try:
            await self.deliver_inner(batches)
            if n == self.hold:
                self.held_first = (batches[0].device, batches[0].seq)
                self.held_began.set()
                await self.release.wait()
                if self.fail_held:
                    from sitegate.plugins import SinkError
                    raise SinkError("acknowledgements lost (test)")
            elif n == self.hold + 1:
                self.after_held_done.set()
        finally:
            self.active -= 1


def _in_order_per_device(lines) -> None:
    for device in {l["device"] for l in lines}:
        seqs = [l["seq"] for l in lines if l["device"] == device]
        assert seqs == sorted(seqs), f"{device} out of order"


def _pipeline_site(tmp_path: Path, down: Path) -> str:
    return f"""
        site: t
        entries:
          - {{id: src, domain: acklog, config: {{ack_path: {tmp_path}/ack, limit: 300, interval: 0}}}}
          - {{id: out, domain: filesink, config: {{path: {tmp_path}/out, down_flag: {down}}}}}
        routes:
          - {{from: ["src.*/*"], to: [out], priority: critical}}
        storage: {{retry_initial: 10ms, retry_max: 50ms, deliveries_in_flight: 2}}
        """


async def _record_id(plane, device_seq) -> int:
    row = await plane.wal.call(lambda c: c.execute(
        "SELECT id FROM wal_records WHERE prio=0 AND device=? AND seq=?", device_seq).fetchone())
    return row[0]


async def _backlog_then_pipeline(tmp_path: Path, host, hold: int) -> tuple:
    """A backlog builds up behind an outage; then the sink may take 2 calls at once."""
    plane = host.services["dataplane"]
    delivery = plane.deliveries["out"]
    plane.fetch_records = 20           # a backlog of many chunks
    await wait_for(lambda: len(acked(tmp_path / "ack")) == 1200, 20, what="all produced during the outage")
    wrapper = _Pipelined(delivery.sink, hold)
    (tmp_path / "down").unlink()
    return plane, delivery, wrapper


async def test_pipelined_deliveries_keep_order_and_the_cursor_waits_for_an_unfinished_call(tmp_path):
    down = tmp_path / "down"
    down.touch()
    async with running_site(tmp_path, _pipeline_site(tmp_path, down), plugin_dirs=[FIXTURES]) as host:
        # Call 1 is the retried call after the outage (one at a time); 2 and 3 are pipelined.
        plane, delivery, wrapper = await _backlog_then_pipeline(tmp_path, host, hold=2)
        with trio.fail_after(10):
            await wrapper.after_held_done.wait()
        await trio.sleep(0.05)
        # The call after the held one finished, but the cursor does not pass the unfinished one.
        held_id = await _record_id(plane, wrapper.held_first)
        assert delivery.cursors[0] < held_id
        assert wrapper.active == 1 and delivery.in_flight == 1
        stored = await plane.wal.call(lambda c: c.execute(
            "SELECT last_id FROM wal_cursors WHERE sink='out' AND prio=0").fetchone())
        assert stored is None or stored[0] < held_id
        wrapper.release.set()
        await wait_for(lambda: acked(tmp_path / "ack") <= _delivered(tmp_path / "out"), 20, what="backlog drained")
        last = await plane.wal.call(lambda c: c.execute("SELECT max(id) FROM wal_records WHERE prio=0").fetchone())
        await wait_for(lambda: delivery.cursors[0] == last[0], 10, what="cursor at the end")
        assert wrapper.most == 2
    lines = sink_lines(tmp_path / "out")
    _in_order_per_device(lines)
    assert len(lines) == len({l["msgId"] for l in lines}) == 1200, "no failure: each reading sent once"


async def test_a_failed_pipelined_call_is_resent_in_order_with_the_calls_after_it(tmp_path):
    down = tmp_path / "down"
    down.touch()
    async with running_site(tmp_path, _pipeline_site(tmp_path, down), plugin_dirs=[FIXTURES]) as host:
        plane, delivery, wrapper = await _backlog_then_pipeline(tmp_path, host, hold=2)
        with trio.fail_after(10):
            await wrapper.after_held_done.wait()
        held_id = await _record_id(plane, wrapper.held_first)
        assert delivery.cursors[0] < held_id
        n_before = len(sink_lines(tmp_path / "out"))
        wrapper.fail_held = True
        wrapper.release.set()
        await wait_for(lambda: acked(tmp_path / "ack") <= _delivered(tmp_path / "out"), 20, what="backlog drained")
        assert delivery.failures == 0 and delivery.state == "online"
    lines = sink_lines(tmp_path / "out")
    assert len({l["msgId"] for l in lines}) == 1200
    # What the failed call and the one after it wrote is written again, from the cursor on, in order.
    resent = lines[n_before:]
    _in_order_per_device(resent)
    first_again = {(l["device"], l["seq"]) for l in lines[:n_before]} & {(l["device"], l["seq"]) for l in resent}
    assert first_again, "the calls from the failed one on are delivered again"
    assert held_id <= delivery.cursors[0]
