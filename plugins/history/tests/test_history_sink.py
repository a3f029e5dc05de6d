"""The history sink: roll-ups against hand-computed values, dedup by msgId, retention tiers, a live site."""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

import pytest
import trio

from sitegate.model import Batch
from sitegate.testing import running_site

HERE = Path(__file__).resolve().parents[1]


def _store_module():
    spec = importlib.util.spec_from_file_location("history_store_under_test", HERE / "store.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


store_mod = _store_module()
T0 = 1_700_000_000.0 - (1_700_000_000.0 % 86400)     # a UTC midnight


def _store(tmp_path, **kw):
    return store_mod.HistoryStore(tmp_path / "h.sqlite", **kw)


def test_hourly_and_daily_rollups_match_hand_computed_values(tmp_path):
    s = _store(tmp_path, raw_keep=1e12)
    # hour 0: 1, 5, 3 ; hour 1: 10, -2 ; a text value in hour 0 is stored raw but not aggregated.
    # Written in two deliveries, the second reaching back into hour 0, so the roll-ups are merged.
    s.write([Batch("d", ["t", "mode", "t"], [5.0, "auto", 3.0], [T0 + 20, T0 + 30, T0 + 3599], seq=0)], now=T0 + 8000)
    s.write([Batch("d", ["t", "t", "t"], [1.0, 10.0, -2.0], [T0 + 10, T0 + 3600, T0 + 7199], seq=3)], now=T0 + 8000)
    hours = s.query("d", "t", T0, T0 + 2 * 3600, "hour")["rows"]
    assert [(r["ts"], r["count"], r["min"], r["max"], r["avg"], r["first"], r["last"]) for r in hours] == [
        (T0, 3, 1.0, 5.0, 3.0, 1.0, 3.0), (T0 + 3600, 2, -2.0, 10.0, 4.0, 10.0, -2.0)]
    day = s.query("d", "t", T0, T0 + 86400, "day")["rows"]
    assert [(r["count"], r["min"], r["max"], r["avg"], r["first"], r["last"]) for r in day] == [
        (5, -2.0, 10.0, 3.4, 1.0, -2.0)]
    raw = s.query("d", "mode", T0, T0 + 60, "raw")["rows"]
    assert raw == [{"ts": T0 + 30, "value": "auto", "quality": 0}]
    assert s.query("d", "mode", T0, T0 + 3600, "hour")["rows"] == []


def test_a_replayed_reading_is_stored_and_counted_once(tmp_path):
    s = _store(tmp_path, raw_keep=1e12)
    b = Batch("d", ["t", "t"], [1.0, 2.0], [T0 + 1, T0 + 2], seq=7)
    assert s.write([b], now=T0) == 2
    assert s.write([b, b], now=T0) == 0     # the data plane redelivers after a crash: same device and seq
    assert len(s.query("d", "t", T0, T0 + 10, "raw")["rows"]) == 2
    assert s.query("d", "t", T0, T0 + 3600, "hour")["rows"][0]["count"] == 2


def test_retention_tiers_prune_each_table_at_its_own_age(tmp_path):
    s = _store(tmp_path, raw_keep=2 * 86400, hourly_keep=10 * 86400, daily_keep=100 * 86400)
    for day in (0, 5, 50):
        s.write([Batch("d", ["t"], [float(day)], [T0 + day * 86400], seq=day)], now=T0 + day * 86400)
    pruned = s.prune(now=T0 + 51 * 86400)
    assert pruned == {"raw": 2, "hourly": 2, "daily": 0}
    assert s.query("d", "t", T0, T0 + 60 * 86400, "day")["rows"][0]["count"] == 1
    with pytest.raises(ValueError, match="resolution: expected one of"):
        s.query("d", "t", T0, T0 + 1, "minute")


async def test_history_sink_stores_a_live_site_and_answers_queries(tmp_path):
    site = """
        site: t
        entries:
          - {id: sim, domain: simulator, config: {devices: 2, interval: 0.02}}
          - {id: history, domain: history}
        routes:
          - {from: ["sim.*/*"], to: [history]}
        storage: {normal_period: 100ms}
        """
    async with running_site(tmp_path, site) as host:
        service = host.services["history"]
        start = time.time() - 60

        async def count():
            return len((await service.query("sim.dev0", "temperature", start, time.time() + 1, "raw"))["rows"])

        deadline = time.monotonic() + 10
        while await count() < 20:
            assert time.monotonic() < deadline, "history got no readings"
            await trio.sleep(0.02)     # polling the condition, with the deadline above
        hours = await service.query("sim.dev0", "temperature", start, time.time() + 1, "hour")
        assert hours["rows"] and hours["rows"][0]["count"] >= 20
        # The shape the WebSocket API's `history` command calls: resolution in seconds, None for raw.
        rows = await host.entry("history").data["history"].query("sim.dev0", "temperature", start,
                                                                  time.time() + 1, 3600)
        assert rows == hours["rows"]
