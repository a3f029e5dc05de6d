"""Entry lifecycle and fault isolation: the behaviours issue 3 pins for the core."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import trio

from sitegate.entries import EntryState, backoff_delays
from sitegate.model import Command
from sitegate.testing import Recorder, running_site, wait_for

FIXTURES = Path(__file__).parent / "fixture_plugins"


def _plugin(name):
    # Fixture plugins are loaded by the core as sitegate_integrations.<domain>.
    return importlib.import_module(f"sitegate_integrations.{name}")


async def test_failing_entry_never_stops_another_entrys_readings(tmp_path):
    site = """
    site: t
    entries:
      - {id: good, domain: simulator, config: {interval: 0.01}}
      - {id: broken, domain: raiser}
      - {id: crashy, domain: crashy, config: {crash_after: 2}}
    """
    async with running_site(tmp_path, site, plugin_dirs=[FIXTURES]) as host:
        rec = Recorder(host)
        await wait_for(lambda: host.entry("crashy").retries >= 2, what="crashy to be retried twice")
        before = len(rec.readings("good.dev0"))
        await wait_for(lambda: len(rec.readings("good.dev0")) >= before + 10, what="good to keep producing")
        assert host.entry("good").state is EntryState.LOADED
        # broken alternates between setup_in_progress and setup_retry; wait for the latter.
        broken = host.entry("broken")
        await wait_for(lambda: broken.state is EntryState.SETUP_RETRY and "ZeroDivisionError: bug in plugin" in broken.reason)
        assert host.entry("crashy").counters["task_failures"] >= 1


async def test_entry_error_is_not_retried(tmp_path):
    site = """
    site: t
    entries:
      - {id: fatal, domain: raiser, config: {fatal: true}}
    """
    async with running_site(tmp_path, site, plugin_dirs=[FIXTURES]) as host:
        ctx = host.entry("fatal")
        await wait_for(lambda: ctx.state is EntryState.SETUP_ERROR)
        await trio.sleep(0.3)
        assert ctx.state is EntryState.SETUP_ERROR and ctx.retries == 0
        assert not ctx.state.recoverable
        assert "credentials rejected" in ctx.reason


async def test_retry_backoff_follows_the_schedule(tmp_path, autojump_clock):
    site = """
    site: t
    runtime:
      retry_backoff: [5s, 10s, 20s, 40s, 80s]
      retry_jitter: 0
    entries:
      - {id: peer, domain: flaky, config: {fail_times: 6}}
    """
    async with running_site(tmp_path, site, plugin_dirs=[FIXTURES], fast=False) as host:
        await wait_for(lambda: host.entry("peer").state is EntryState.LOADED, timeout=400)
        tries = _plugin("flaky").ATTEMPTS["peer"]
        gaps = [round(b - a, 6) for a, b in zip(tries, tries[1:])]
        assert gaps == [5, 10, 20, 40, 80, 80]


def test_backoff_jitter_stays_within_its_fraction():
    import random
    delays = backoff_delays([5, 10, 20, 40, 80], 0.1, random.Random(1))
    got = [next(delays) for _ in range(7)]
    for base, d in zip([5, 10, 20, 40, 80, 80, 80], got):
        assert base <= d <= base * 1.1
    assert len(set(got)) == 7   # jitter actually varies


async def test_edit_reloads_only_the_changed_entry_while_another_keeps_producing(tmp_path):
    from sitegate.config import load_site
    site = """
    site: t
    entries:
      - {id: steady, domain: simulator, config: {interval: 0.01}}
      - {id: changing, domain: simulator, config: {interval: 0.01, seed: 1}}
    """
    async with running_site(tmp_path, site) as host:
        rec = Recorder(host)
        steady_runner = host.runners["steady"]
        old_changing = host.runners["changing"]
        await wait_for(lambda: len(rec.readings("steady.dev0")) > 20)
        edited = (tmp_path / "site.yaml").read_text().replace("seed: 1", "seed: 2")
        (tmp_path / "site.yaml").write_text(edited)
        summary = await host.apply(load_site(tmp_path / "site.yaml"))
        assert summary["reloaded"] == ["changing"] and summary["unchanged"] == ["steady"]
        mark = len(rec.readings("steady.dev0"))
        await wait_for(lambda: len(rec.readings("steady.dev0")) > mark + 20)
        assert host.runners["steady"] is steady_runner            # never restarted
        assert host.runners["changing"] is not old_changing       # restarted
        # No gap: steady's samples stay on its 10 ms schedule through the reload.
        ts = [t for _, p, _, t in rec.readings("steady.dev0") if p == "temperature"]
        assert max(b - a for a, b in zip(ts, ts[1:])) < 0.25


async def test_shutdown_completes_within_its_bound_even_if_unload_hangs(tmp_path):
    site = """
    site: t
    entries:
      - {id: hang, domain: slowunload}
      - {id: sim, domain: simulator}
    """
    slow = None
    t0 = None
    async with running_site(tmp_path, site, plugin_dirs=[FIXTURES]) as host:
        slow = _plugin("slowunload")
        slow.ORDER.clear()
        await wait_for(lambda: host.entry("hang").state is EntryState.LOADED)
        t0 = trio.current_time()
    elapsed = trio.current_time() - t0
    assert elapsed < 2.0, f"shutdown took {elapsed:.2f} s, bound is 2 s"
    assert host.entry("hang").state is EntryState.FAILED_UNLOAD
    assert host.entry("sim").state is EntryState.NOT_LOADED
    # Cleanups ran in reverse order of registration.
    assert slow.ORDER == ["second-registered", "first-registered"]


async def test_unload_cancels_that_entrys_tasks_and_nothing_else(tmp_path):
    site = """
    site: t
    entries:
      - {id: a, domain: simulator, config: {interval: 0.01}}
      - {id: b, domain: simulator, config: {interval: 0.01}}
    """
    async with running_site(tmp_path, site) as host:
        rec = Recorder(host)
        await wait_for(lambda: rec.devices() >= {"a.dev0", "b.dev0"})
        await host.unload_entry("a")
        assert host.entry("a").state is EntryState.NOT_LOADED
        n_a, n_b = len(rec.readings("a.dev0")), len(rec.readings("b.dev0"))
        await wait_for(lambda: len(rec.readings("b.dev0")) > n_b + 10)
        assert len(rec.readings("a.dev0")) == n_a


async def test_watchdog_names_the_entry_that_blocked_the_loop(tmp_path):
    site = """
    site: t
    entries:
      - {id: culprit, domain: blocker, config: {block_for: 0.3}}
    """
    async with running_site(tmp_path, site, plugin_dirs=[FIXTURES]) as host:
        sub = host.events.subscribe("loop.blocked")
        with trio.fail_after(5):
            event = await sub.receive.receive()
        assert event.data["entry"] == "culprit"
        assert event.data["seconds"] >= 0.29
        assert "blocking-task" in event.data["task"]


async def test_config_version_is_migrated_before_setup(tmp_path):
    site = """
    site: t
    entries:
      - {id: old, domain: migrating, version: 1, config: {addr: 10.0.0.1}}
      - {id: hopeless, domain: migrating, version: 1, config: {}}
    """
    async with running_site(tmp_path, site, plugin_dirs=[FIXTURES]) as host:
        await wait_for(lambda: host.entry("old").state is EntryState.LOADED)
        assert host.entry("old").data["host"] == "10.0.0.1"
        assert host.entry("hopeless").state is EntryState.MIGRATION_ERROR
        assert "no 'addr'" in host.entry("hopeless").reason


@pytest.mark.parametrize("domain, message", [
    ("badsig", "wrong signature: argument(s) hass not in setup_entry(entry)"),
    ("unknownhook", "unknown hook 'async_setup_entry'"),
    ("syncsetup", "hook setup_entry must be 'async def'"),
])
async def test_bad_hookimpl_is_a_load_error_naming_the_plugin(tmp_path, domain, message):
    site = f"""
    site: t
    entries:
      - {{id: bad, domain: {domain}}}
      - {{id: sim, domain: simulator, config: {{interval: 0.01}}}}
    """
    async with running_site(tmp_path, site, plugin_dirs=[FIXTURES]) as host:
        ctx = host.entry("bad")
        assert ctx.state is EntryState.SETUP_ERROR
        assert f"plugin {domain!r}" in ctx.reason and message in ctx.reason
        await wait_for(lambda: host.entry("sim").state is EntryState.LOADED)


async def test_command_round_trips_with_ack_nack_and_timeout(tmp_path):
    site = """
    site: t
    entries:
      - {id: sim, domain: simulator, config: {interval: 0.01}}
    """
    async with running_site(tmp_path, site) as host:
        rec = Recorder(host)
        ok = await host.command("sim", Command("sim.dev0", "write", "temperature", 99.5))
        assert ok.status == "ack"
        await wait_for(lambda: any(p == "temperature" and v == 99.5 for _, p, v, _ in rec.readings("sim.dev0")))
        bad = await host.command("sim", Command("sim.dev0", "write", "nope", 1))
        assert bad.status == "nack" and "no point 'nope'" in bad.detail


def test_writes_are_checked_against_the_points_declaration_before_any_adapter_sees_them():
    from sitegate.host import write_refusal
    from sitegate.model import PointInfo

    fl, i, b, s = (PointInfo("p", datatype=t, writable=True) for t in ("float", "int", "bool", "str"))
    assert [write_refusal(fl, v) for v in (1, 2.5, -0.0)] == [None, None, None]
    assert write_refusal(fl, "abc") == "takes a finite float; got 'abc' (str)"
    assert write_refusal(fl, True) == "takes a finite float; got True (bool)"
    assert write_refusal(fl, float("nan")) == "takes a finite float; got nan (float)"
    assert write_refusal(fl, None) == "takes a finite float; got None (NoneType)"
    assert [write_refusal(i, v) for v in (3, 4.0)] == [None, None]
    assert write_refusal(i, 4.5) == "takes an int; got 4.5 (float)"
    assert [write_refusal(b, v) for v in (True, False, 0, 1)] == [None] * 4
    assert write_refusal(b, "on") == "takes a bool; got 'on' (str)"
    assert write_refusal(s, "on") is None and write_refusal(s, 5) == "takes a str; got 5 (int)"
    assert write_refusal(PointInfo("p", datatype="float"), 1.0) == "is not writable"
    assert write_refusal(PointInfo("p", datatype="bytes", writable=True), b"\x00") is None   # unknown type: the adapter's call


async def test_integrations_are_imported_off_the_event_loop(tmp_path):
    # Importing a plugin (and pymodbus, asyncua, ... with it) is up to a second of CPU: the site's
    # event loop (API, running entries) must not wait for it, at start or on a live edit.
    import threading

    site = """
site: t
entries:
  - {id: probe, domain: importedwhere}
routes:
  - {from: ["probe/*"], through: [{importedwhere_proc: {}}], to: []}
"""
    loop_thread = threading.current_thread().name
    async with running_site(tmp_path, site, plugin_dirs=[FIXTURES]) as host:
        await wait_for(lambda: host.entry("probe").state.label == "loaded", 5, what="probe loaded")
        entry_import = host.entry("probe").data["imported_on"]
        proc_import = host.loader.loaded["importedwhere_proc"].module.IMPORTED_ON
    assert entry_import != loop_thread and proc_import != loop_thread, (entry_import, proc_import, loop_thread)


async def test_an_entry_naming_another_follows_that_entry_through_live_edits(tmp_path):
    # Removing the entry it names stops it in setup_error with the place; adding it back sets it
    # up again; an edit of the named entry that keeps the reference valid leaves it running.
    from sitegate.config import load_site
    site = """
site: t
entries:
  - {id: line, domain: simulator, config: {interval: 0.05}}
  - {id: fol, domain: follower, config: {leader: line}}
"""
    async def apply(text: str) -> dict:
        (tmp_path / "site.yaml").write_text(text)
        return await host.apply(load_site(tmp_path / "site.yaml"))

    async with running_site(tmp_path, site, plugin_dirs=[FIXTURES]) as host:
        await wait_for(lambda: host.entry("fol").state.label == "loaded", 5, what="fol loaded")
        healthy = host.runners["fol"]
        summary = await apply(site.replace("interval: 0.05", "interval: 0.1"))
        assert summary["reloaded"] == ["line"] and host.runners["fol"] is healthy
        summary = await apply(site.replace("  - {id: line, domain: simulator, config: {interval: 0.05}}\n", ""))
        assert summary["removed"] == ["line"] and summary["reloaded"] == ["fol"]
        fol = host.entry("fol")
        assert fol.state.label == "setup_error"
        assert fol.reason.endswith("entries[0].config.leader: no entry 'line' in the site; simulator entries: none"), \
            fol.reason
        assert "site.yaml:4" in fol.reason
        summary = await apply(site)
        assert summary["added"] == ["line"] and summary["reloaded"] == ["fol"]
        await wait_for(lambda: host.entry("fol").state.label == "loaded", 5, what="fol loaded again")
