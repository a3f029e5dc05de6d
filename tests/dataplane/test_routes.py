"""Route matching, the decision cache, sequence numbers of routed readings, the privacy check."""

from __future__ import annotations

from sitegate.config.schema import Route
from sitegate.dataplane.privacy import PrivacyGuard
from sitegate.dataplane.routes import RouteTable, compile_route
from sitegate.dataplane.stage import runs
from sitegate.dataplane.wal import WriteAheadLog
from sitegate.model import Batch, PointInfo
from sitegate.testing import running_site, wait_for
from tests.dataplane.dp_helpers import FIXTURES, sink_lines


def _route(i, frm, to=("out",), priority="normal", tags=()):
    return compile_route(i, Route(from_=list(frm), to=list(to), priority=priority, tags=list(tags)))


def test_globs_match_device_slash_point_and_tags_must_all_be_declared():
    infos = {("plc.a", "temp"): PointInfo("temp", tags=("hall", "fast")), ("plc.a", "rpm"): PointInfo("rpm")}
    table = RouteTable([_route(0, ["plc.*/temp"]), _route(1, ["*/*"], tags=["hall", "fast"]),
                        _route(2, ["other/*"])], lambda d, p: infos.get((d, p)))
    decision = table.decide(Batch("plc.a", ["temp", "rpm"], [1, 2], [0, 0], seq=10))
    assert [(r.index, idx) for r, idx in decision] == [(0, [0]), (1, [0])]
    assert table.decide(Batch("x", ["y"], [1], [0])) == []


def test_decisions_are_cached_per_shape_until_invalidated():
    infos: dict = {}
    table = RouteTable([_route(0, ["*/*"], tags=["t"])], lambda d, p: infos.get((d, p)))
    b = Batch("d", ["p"], [1], [0])
    assert table.decide(b) == []
    infos[("d", "p")] = PointInfo("p", tags=("t",))
    assert table.decide(b) == []            # cached
    table.invalidate()
    assert len(table.decide(b)) == 1


def test_untouched_subsets_keep_their_sequence_numbers_in_contiguous_runs():
    b = Batch("d", list("abcdef"), list(range(6)), [0.0] * 6, seq=100)
    parts = runs(b, [0, 1, 3, 5])
    assert [(p.seq, list(p.points)) for p in parts] == [(100, ["a", "b"]), (103, ["d"]), (105, ["f"])]


def test_privacy_keeps_restricted_raw_points_but_lets_aggregates_out():
    infos = {("d", "hr"): PointInfo("hr", restricted=True)}
    guard = PrivacyGuard(["*/room*"], False, lambda d, p: infos.get((d, p)))
    b = Batch("d", ["hr", "temp", "hr.avg", "room", "room.count", "x"], [1, 2, 3, 4, 5, 6], [0] * 6, seq=7)
    parts = guard.filter(b)
    assert [(p.seq, list(p.points)) for p in parts] == [(8, ["temp", "hr.avg"]), (11, ["room.count", "x"])]
    assert guard.withheld == 2
    # min, max, first, last and median are each one raw reading under another name: they stay too.
    leaky = Batch("d", ["hr.max", "hr.first", "hr.last", "room.min", "hr.sum"], [1, 2, 3, 4, 5], [0] * 5, seq=20)
    assert [list(p.points) for p in guard.filter(leaky)] == [["hr.sum"]]


async def test_sequence_numbers_continue_after_a_restart(tmp_path):
    site = f"""
        site: t
        entries:
          - {{id: src, domain: acklog, config: {{ack_path: {tmp_path}/ack, limit: 5}}}}
          - {{id: out, domain: filesink, config: {{path: {tmp_path}/out}}}}
        routes:
          - {{from: ["src.*/*"], to: [out]}}
        durability: power-loss
        """
    for run in (1, 2):
        async with running_site(tmp_path, site, plugin_dirs=[FIXTURES]) as host:
            plane = host.services["dataplane"]
            # Delivered *and* acknowledged (the cursor moved): stopping earlier would leave the last
            # delivery unacknowledged, and at-least-once delivery would then send it again.
            await wait_for(lambda: len(sink_lines(tmp_path / "out")) >= 20 * run
                           and plane.sink_status().get("out", {}).get("backlog") == 0, 20,
                           what="5 rounds delivered and acknowledged")
            assert len(sink_lines(tmp_path / "out")) == 20 * run
            sync = await plane.wal.call(lambda c: c.execute("PRAGMA synchronous").fetchone()[0])
            assert sync == 2          # FULL for durability: power-loss
    wal = WriteAheadLog(tmp_path / ".sitegate" / "site.sqlite")
    wal.open()
    assert wal.next_seq == {"src.d0": 20, "src.d1": 20}
    lines = sink_lines(tmp_path / "out")
    assert sorted(l["seq"] for l in lines if l["device"] == "src.d0") == list(range(20))


async def test_sink_status_shows_the_backlog_of_a_sink_that_is_down(tmp_path):
    (tmp_path / "down").touch()
    site = f"""
        site: t
        entries:
          - {{id: src, domain: acklog, config: {{ack_path: {tmp_path}/ack, limit: 10}}}}
          - {{id: out, domain: filesink, config: {{path: {tmp_path}/out, down_flag: {tmp_path}/down}}}}
        routes:
          - {{from: ["src.*/*"], to: [out], priority: critical}}
        storage: {{retry_initial: 10ms, retry_max: 20ms}}
        """
    async with running_site(tmp_path, site, plugin_dirs=[FIXTURES]) as host:
        plane = host.services["dataplane"]
        await wait_for(lambda: plane.sink_status().get("out", {}).get("backlog") == 20, 5, what="backlog of 20")
        await wait_for(lambda: plane.sink_status()["out"]["state"] == "offline", 5, what="offline after retries")
        (tmp_path / "down").unlink()
        await wait_for(lambda: plane.sink_status()["out"]["backlog"] == 0, 5, what="backlog drained")
        assert plane.sink_status()["out"]["delivered"] == 40


async def test_a_device_declared_again_with_new_tags_is_routed_by_them(tmp_path):
    from sitegate.model import DeviceInfo
    site = f"""
        site: t
        entries:
          - {{id: out, domain: filesink, config: {{path: {tmp_path}/out}}}}
        routes:
          - {{from: ["*/*"], tags: [export], to: [out], priority: critical}}
        """
    async with running_site(tmp_path, site, plugin_dirs=[FIXTURES]) as host:
        host.devices.declare(DeviceInfo("dev", "x", points=(PointInfo("p"),)))
        await host.pipeline.submit(Batch("dev", ["p"], [1.0], [0.0]))
        host.devices.declare(DeviceInfo("dev", "x", points=(PointInfo("p", tags=("export",)),)))
        await host.pipeline.submit(Batch("dev", ["p"], [2.0], [0.0]))
        await wait_for(lambda: sink_lines(tmp_path / "out"), 5, what="the tagged reading")
        assert [l["value"] for l in sink_lines(tmp_path / "out")] == [2.0]
        assert host.services["dataplane"].table.unrouted == 1


async def test_try_submit_commits_in_the_background_and_refuses_when_the_wal_is_behind(tmp_path):
    site = f"""
        site: t
        entries:
          - {{id: out, domain: filesink, config: {{path: {tmp_path}/out}}}}
        routes:
          - {{from: ["*/*"], to: [out], priority: critical}}
        """
    async with running_site(tmp_path, site, plugin_dirs=[FIXTURES]) as host:
        plane = host.services["dataplane"]
        plane.stage.max_pending = 10
        # No checkpoint between the calls: nothing can be reported committed, so the queue fills.
        taken = [host.pipeline.try_submit(Batch("dev", ["p", "q"], [i, i], [0.0, 0.0])) for i in range(8)]
        assert taken == [True] * 5 + [False] * 3
        assert host.pipeline.rejected == 3
        await wait_for(lambda: len(sink_lines(tmp_path / "out")) == 10, 5, what="the 5 accepted batches delivered")
        assert host.pipeline.try_submit(Batch("dev", ["p"], [9], [0.0]))


def test_a_processor_that_raises_costs_only_its_route_and_is_reported():
    from sitegate.dataplane.stage import RouteStage

    class Broken:
        def process(self, batch):
            raise ZeroDivisionError("division by zero")

    events = []
    table = RouteTable([_route(0, ["*/*"], to=("a",)), _route(1, ["*/*"], to=("b",))], lambda d, p: None)
    table.routes[1].steps = [Broken()]
    from sitegate.pipeline import Pipeline
    stage = RouteStage(table, wal=None, pipeline=Pipeline("t"), emit=events.append)
    rows = stage.rows_for(Batch("d", ["p", "q"], [1, 2], [0, 0], seq=5))
    assert [(r[1], r[2], r[3], r[4]) for r in rows] == [("d", 5, 2, ",a,")]
    assert stage.processor_errors == 2
    assert events[0].kind == "route.processor_error" and "ZeroDivisionError" in events[0].message
