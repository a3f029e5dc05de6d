"""The disk budget: when it fills, the oldest low then normal readings go, counted; critical stays."""

from __future__ import annotations

import sqlite3

from sitegate.testing import running_site, wait_for
from tests.dataplane.dp_helpers import FIXTURES, acked, sink_lines


def _stored(path, point: str) -> set[tuple[str, int]]:
    conn = sqlite3.connect(path)
    out = set()
    for device, seq, n in conn.execute("SELECT device, seq, n FROM wal_records WHERE device LIKE 'src.%'"):
        out.update((device, seq + i) for i in range(n))
    conn.close()
    return out


async def test_budget_drops_oldest_low_then_normal_never_critical_and_counts_it(tmp_path):
    down = tmp_path / "down"
    down.touch()
    site = f"""
        site: t
        entries:
          - {{id: src, domain: acklog, config: {{ack_path: {tmp_path}/ack, limit: 300, interval: 0, points: [low1, norm, crit]}}}}
          - {{id: out, domain: filesink, config: {{path: {tmp_path}/out, down_flag: {down}}}}}
        routes:
          - {{from: ["src.*/crit"], to: [out], priority: critical}}
          - {{from: ["src.*/norm"], to: [out], priority: normal}}
          - {{from: ["src.*/low1"], to: [out], priority: low}}
        storage: {{budget: 100kB, retry_initial: 10ms, retry_max: 50ms}}
        """
    async with running_site(tmp_path, site, plugin_dirs=[FIXTURES]) as host:
        plane = host.services["dataplane"]
        await wait_for(lambda: len(acked(tmp_path / "ack")) == 1800, 20, what="all produced")
        await wait_for(lambda: plane.wal.committed_readings == 1800, 5, what="all committed")
        drops = await plane.drop_counts()
        live = plane.wal.live
        # Acknowledged readings (the acklog adapter wrote their seq after commit), by point.
        crit = {(l.split()[0], int(l.split()[1]) + 2) for l in (tmp_path / "ack").read_text().splitlines()}
        stored = _stored(plane.wal.path, "cr")
        assert crit <= stored, "a critical reading was dropped"
        assert drops["low/budget"]["readings"] == 600, drops          # every low reading went first
        assert 0 < drops["normal/budget"]["readings"] < 600, drops     # then only the oldest normal ones
        assert "critical/budget" not in drops
        assert sum(s[2] for s in live) <= 100_000
        assert live[0][1] == 600 and live[1][1] == 600 - drops["normal/budget"]["readings"]
        events = [e for e in host.events.recent if e.kind == "storage.drop"]
        assert events and sum(e.data["readings"].get("low", 0) for e in events) == 600
        # What normal readings remain are the newest ones.
        conn = sqlite3.connect(plane.wal.path)
        oldest_normal = conn.execute("SELECT min(id) FROM wal_records WHERE prio=1").fetchone()[0]
        newest_dropped_gone = conn.execute("SELECT count(*) FROM wal_records WHERE prio=1 AND id>?",
                                           (oldest_normal,)).fetchone()[0]
        conn.close()
        assert newest_dropped_gone == live[1][0] - 1
        down.unlink()
        await wait_for(lambda: crit <= {(l["device"], l["seq"]) for l in sink_lines(tmp_path / "out")}, 10,
                       what="every critical reading delivered after the outage")


async def test_budget_full_of_critical_keeps_it_and_says_so(tmp_path):
    down = tmp_path / "down"
    down.touch()
    site = f"""
        site: t
        entries:
          - {{id: src, domain: acklog, config: {{ack_path: {tmp_path}/ack, limit: 300, interval: 0, points: [crit]}}}}
          - {{id: out, domain: filesink, config: {{path: {tmp_path}/out, down_flag: {down}}}}}
        routes:
          - {{from: ["src.*/crit"], to: [out], priority: critical}}
        storage: {{budget: 10kB, retry_initial: 10ms, retry_max: 50ms}}
        """
    async with running_site(tmp_path, site, plugin_dirs=[FIXTURES]) as host:
        plane = host.services["dataplane"]
        await wait_for(lambda: len(acked(tmp_path / "ack")) == 600, 20, what="all produced")
        await wait_for(lambda: plane.wal.committed_readings == 600, 5, what="all committed")
        assert plane.wal.live[0][1] == 600
        assert plane.retention.over_budget
        assert any(e.kind == "storage.over_budget" for e in host.events.recent)
        assert not await plane.drop_counts()


async def test_records_leave_the_wal_once_every_sink_has_them_and_expire_after_their_ttl(tmp_path):
    down = tmp_path / "down"
    down.touch()
    site = f"""
        site: t
        entries:
          - {{id: src, domain: acklog, config: {{ack_path: {tmp_path}/ack, limit: 10, points: [x, y]}}}}
          - {{id: a, domain: filesink, config: {{path: {tmp_path}/a}}}}
          - {{id: b, domain: filesink, config: {{path: {tmp_path}/b, down_flag: {down}}}}}
        routes:
          - {{from: ["src.*/x"], to: [a, b], priority: critical}}
          - {{from: ["src.*/y"], to: [a, b], priority: low}}
        storage: {{retry_initial: 10ms, retry_max: 50ms, low_period: 100ms, ttl: {{low: 1s}}}}
        """
    async with running_site(tmp_path, site, plugin_dirs=[FIXTURES]) as host:
        plane = host.services["dataplane"]
        await wait_for(lambda: len(sink_lines(tmp_path / "a")) == 40, 10, what="sink a has everything")
        await plane.retain()
        # b has nothing yet: retention keeps every critical record for it.
        assert plane.wal.live[0][1] == 20
        # The low ones are past their 1 s TTL before b comes back: dropped, counted, reported.
        await wait_for(lambda: plane.drops.get("low/ttl") == 20, 5, what="low readings expired")
        assert (await plane.drop_counts())["low/ttl"] == {"records": 20, "readings": 20}
        assert any(e.kind == "storage.drop" and e.data["reason"] == "ttl" for e in host.events.recent)
        down.unlink()
        await wait_for(lambda: len(sink_lines(tmp_path / "b")) == 20, 10, what="b got the critical readings")
        # Written is not yet acknowledged: retention follows the cursor, which moves once deliver returned.
        b = plane.deliveries["b"]
        await wait_for(lambda: b.cursors[0] == plane.wal.last_ids[0], 10, what="b's critical cursor past them")
        await plane.retain()
        assert plane.wal.live[0][0] == 0 and plane.wal.live[2][0] == 0
    assert {l["point"] for l in sink_lines(tmp_path / "b")} == {"x"}
