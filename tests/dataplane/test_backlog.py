"""A sink's backlog counts the records still in the WAL after its cursor, nothing else.

Not what retention removed (TTL, disk budget) while the sink was offline: those will never be
delivered, so an offline sink's backlog (`sink_backlog_records`) and `sli_delivery_ratio` shrink
as they go, without any delivery. Not the ids of other priorities between its cursor and the
newest record either. Checked against a count in the file itself, across a restart, and with
records another process put back (`sitegate dlq replay` while the site runs).
"""

from __future__ import annotations

import sqlite3
import time

import trio

from sitegate.cli import main
from sitegate.model import Batch
from sitegate.observability.exporters import dataplane as exported
from sitegate.testing import running_site, wait_for
from tests.dataplane.dp_helpers import FIXTURES, acked, sink_lines


def in_file(path, cursors) -> int:
    """Records in the WAL after `cursors` (per priority), counted in the file."""
    with sqlite3.connect(path) as conn:
        return sum(conn.execute("SELECT count(*) FROM wal_records WHERE prio=? AND id>?", (p, cursors[p])).fetchone()[0]
                   for p in range(3))


def stored(path) -> list[int]:
    with sqlite3.connect(path) as conn:
        counts = dict(conn.execute("SELECT prio, count(*) FROM wal_records GROUP BY prio").fetchall())
    return [counts.get(p, 0) for p in range(3)]


def metric(plane, host, name: str, sink: str) -> float:
    [value] = [m.value for m in exported(plane, host) if m.name == name and m.labels.get("sink") == sink]
    return value


def site(tmp_path, limit: int = 30, ttl: str = "ttl: {{low: 1s, normal: 2s}}") -> str:
    return f"""
        site: t
        entries:
          - {{id: src, domain: acklog, config: {{ack_path: {tmp_path}/ack, limit: {limit}, points: [x, y, z]}}}}
          - {{id: a, domain: filesink, config: {{path: {tmp_path}/a}}}}
          - {{id: b, domain: filesink, config: {{path: {tmp_path}/b, down_flag: {tmp_path}/down}}}}
          - {{id: c, domain: filesink, config: {{path: {tmp_path}/c, down_flag: {tmp_path}/down_c}}}}
        routes:
          - {{from: ["src.*/x"], to: [a, b, c], priority: critical}}
          - {{from: ["src.*/y"], to: [a, b, c], priority: low}}
          - {{from: ["src.*/z"], to: [a, b, c], priority: normal}}
        storage: {{retry_initial: 10ms, retry_max: 50ms, low_period: 100ms, normal_period: 100ms,
                   {ttl.replace("{{", "{").replace("}}", "}")}}}
        """


async def test_an_offline_sinks_backlog_shrinks_as_retention_drops_what_it_waited_for(tmp_path):
    (tmp_path / "down").touch()
    (tmp_path / "down_c").touch()
    async with running_site(tmp_path, site(tmp_path), plugin_dirs=[FIXTURES]) as host:
        plane = host.services["dataplane"]
        path = plane.wal.path
        await wait_for(lambda: len(sink_lines(tmp_path / "a")) == 180, 10, what="sink a has everything")
        await wait_for(lambda: plane.drops.get("low/ttl") is None and len(acked(tmp_path / "ack")) == 180, 5,
                       what="everything committed, nothing expired yet")
        b, a = plane.deliveries["b"], plane.deliveries["a"]
        assert b.cursors == [0, 0, 0]
        # Every record is there for b (critical, normal and low ids interleave: counted per priority).
        assert plane.sink_status()["b"]["backlog"] == in_file(path, b.cursors) == sum(stored(path)) > 0
        assert plane.sink_status()["a"]["backlog"] == in_file(path, a.cursors) == 0
        before = plane.sink_status()["b"]["backlog"]
        ratio_before = metric(plane, host, "sli_delivery_ratio", "b")
        # Low readings pass their TTL, then normal ones: b delivered nothing, its backlog falls with them.
        await wait_for(lambda: plane.drops.get("low/ttl", 0) > 0, 5, what="low readings expired")
        await plane.retain()
        assert plane.sink_status()["b"]["backlog"] == in_file(path, b.cursors) < before
        await wait_for(lambda: plane.drops.get("normal/ttl", 0) > 0, 5, what="normal readings expired")
        await plane.retain()
        left = stored(path)
        assert left[1] == left[2] == 0 and left[0] > 0
        assert plane.sink_status()["b"]["backlog"] == in_file(path, b.cursors) == left[0]
        assert metric(plane, host, "sink_backlog_records", "b") == left[0]
        assert b.delivered_readings == 0 and b.cursors == [0, 0, 0]
        assert metric(plane, host, "sli_delivery_ratio", "b") == ratio_before == 0.0
        assert plane.sink_status()["a"]["backlog"] == 0
        # Newer normal readings arrive, one record (their older ones are gone): b's cursor will skip
        # the removed ones.
        entry = host.entry("src")
        now = time.time()
        await entry.publish(Batch("src.d0", ["z"] * 5, [1.0, 2.0, 3.0, 4.0, 5.0], [now] * 5))
        await wait_for(lambda: plane.sink_status()["b"]["backlog"] == left[0] + 1 == in_file(path, b.cursors), 5,
                       what="the new records in b's backlog")
        # b comes back: what is left goes out, and its backlog is 0, though the records stay for c.
        (tmp_path / "down").unlink()
        await wait_for(lambda: len(sink_lines(tmp_path / "b")) == left[0] + 5, 10, what="b delivered what was left")
        await wait_for(lambda: plane.sink_status()["b"]["backlog"] == 0, 5, what="b's backlog at 0")
        c = plane.deliveries["c"]
        assert plane.sink_status()["c"]["backlog"] == in_file(path, c.cursors) == sum(stored(path)) == left[0] + 1


async def test_backlogs_are_right_after_a_restart_and_count_what_dlq_replay_put_back(tmp_path):
    (tmp_path / "down").touch()
    (tmp_path / "down_c").touch()
    async with running_site(tmp_path, site(tmp_path, limit=10), plugin_dirs=[FIXTURES]) as host:
        plane = host.services["dataplane"]
        await wait_for(lambda: len(sink_lines(tmp_path / "a")) == 60, 10, what="sink a has everything")
        await wait_for(lambda: plane.drops.get("low/ttl", 0) == 20, 5, what="low readings expired")
    # Restarted with b still down (and no TTL now, so nothing moves while we count): a's cursor is
    # past records kept for b, b's is at 0. The adapter produces its rounds again.
    async with running_site(tmp_path, site(tmp_path, limit=10, ttl=""), plugin_dirs=[FIXTURES]) as host:
        plane = host.services["dataplane"]
        path = plane.wal.path
        await wait_for(lambda: len(acked(tmp_path / "ack")) == 120 and len(sink_lines(tmp_path / "a")) == 120, 10,
                       what="the second run's readings delivered to a")
        a, b = plane.deliveries["a"], plane.deliveries["b"]
        await wait_for(lambda: plane.sink_status()["a"]["backlog"] == in_file(path, a.cursors), 5, what="a's backlog")
        assert plane.sink_status()["b"]["backlog"] == in_file(path, b.cursors) == sum(stored(path)) > 0
        # Records another process appends while the site runs (a sink dead letter replayed by
        # `sitegate dlq replay`) are counted in the depth and the backlogs.
        with sqlite3.connect(path) as conn:
            conn.execute("INSERT INTO dead_letters(sink, prio, device, seq, n, error, failed_at, body) "
                         "SELECT 'a', prio, device, seq, n, 'refused', 0, body FROM wal_records WHERE prio=0 "
                         "ORDER BY id LIMIT 1")
        depth = plane.wal.live[0][0]
        assert await trio.to_thread.run_sync(main, ["dlq", "replay", "--db", str(path), "--all"]) == 0
        await wait_for(lambda: plane.wal.live[0][0] == depth + 1, 5, what="the replayed record counted")
        assert [s[0] for s in plane.wal.live] == stored(path)
        assert plane.sink_status()["b"]["backlog"] == in_file(path, b.cursors)
        await wait_for(lambda: plane.sink_status()["a"]["backlog"] == in_file(path, a.cursors) == 0, 5,
                       what="a delivered the replayed record")
