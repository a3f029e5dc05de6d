"""A live upgrade: verified, loaded, health-checked, committed; a broken version rolls back by itself
while another entry keeps producing."""

from __future__ import annotations

import json

import trio

from sitegate.config import load_site
from sitegate.entries import EntryState
from sitegate.host import SiteHost
from sitegate.registry.source import RegistrySource
from sitegate.testing import Recorder, wait_for

ADAPTER = '''
import trio
from sitegate.errors import EntryError
from sitegate.hookspecs import hookimpl
from sitegate.model import Batch

@hookimpl
async def setup_entry(entry):
    if BROKEN:
        raise EntryError("version " + VERSION + " cannot talk to the device")
    async def run():
        n = 0
        while True:
            await entry.publish(Batch.of(entry.id, {"v": n, "version": VERSION}))
            n += 1
            await trio.sleep(0.01)
    entry.start_task(run)
'''


def _publish(lab, domain, version, broken=False):
    lab.publish(domain, version, code=f"BROKEN = {broken}\n" + ADAPTER, extra={"kinds": ["adapter"]})


async def test_upgrade_commits_a_healthy_version_and_rolls_back_a_broken_one(lab, tmp_path):
    _publish(lab, "meter", "1.0.0")
    _publish(lab, "other", "1.0.0")
    site = tmp_path / "site.yaml"
    site.write_text(f"""
site: up
runtime: {{state_dir: {lab.state}, retry_backoff: [0.05], retry_jitter: 0}}
plugins: {{meter: "==1.0.0"}}
entries:
  - {{id: meter, domain: meter}}
  - {{id: other, domain: other}}
""")
    source = RegistrySource(lab.repo.path, lab.state, {"meter": "==1.0.0", "other": ""}, actor="test")
    host = SiteHost(load_site(site), source)
    async with trio.open_nursery() as nursery:
        await nursery.start(host.run)
        rec = Recorder(host)
        await wait_for(lambda: rec.readings("meter") and rec.readings("other"))
        other_runner = host.runners["other"]

        _publish(lab, "meter", "1.1.0", broken=True)
        result = await host.upgrade_plugin("meter", "==1.1.0", health_deadline=2)
        assert result.result == "rolled_back" and result.new_version == "1.1.0"
        assert "cannot talk to the device" in result.detail
        assert host.loader.loaded["meter"].manifest.version == "1.0.0"
        await wait_for(lambda: host.entry("meter").state is EntryState.LOADED)
        mark = len(rec.readings("meter"))
        await wait_for(lambda: len(rec.readings("meter")) > mark + 3, what="1.0.0 producing again")
        assert [v for _, p, v, _ in rec.readings("meter")][-1] == "1.0.0"

        _publish(lab, "meter", "1.2.0")
        result = await host.upgrade_plugin("meter", "==1.2.0", health_deadline=5)
        assert result.result == "upgraded", result
        await wait_for(lambda: any(v == "1.2.0" for _, p, v, _ in rec.readings("meter") if p == "version"))

        # The other entry was never touched and never stopped producing.
        assert host.runners["other"] is other_runner
        ts = [t for _, p, _, t in rec.readings("other") if p == "v"]
        assert max(b - a for a, b in zip(ts, ts[1:])) < 0.5
        await host.shutdown()

    audit = [json.loads(l) for l in (lab.state / "plugins" / "audit.jsonl").read_text().splitlines()]
    outcomes = [(a["action"], a["result"], a.get("version")) for a in audit if a["action"] == "upgrade"]
    assert outcomes == [("upgrade", "rolled_back", "1.1.0"), ("upgrade", "ok", "1.2.0")]
    assert all(a["who"] and a["at"] for a in audit)   # who, what, when, result
    # After a restart, 1.2.0 is what loads (the commit is durable).
    again = RegistrySource(lab.repo.path, lab.state, {"meter": ""}, actor="test")
    assert again.prepare()["meter"].version == "1.2.0"


async def test_refused_upgrade_leaves_the_running_version_alone(lab, tmp_path):
    _publish(lab, "meter", "1.0.0")
    site = tmp_path / "site.yaml"
    site.write_text(f"site: up\nruntime: {{state_dir: {lab.state}}}\nentries:\n  - {{id: meter, domain: meter}}\n")
    host = SiteHost(load_site(site), RegistrySource(lab.repo.path, lab.state, {"meter": ""}, actor="test"))
    async with trio.open_nursery() as nursery:
        await nursery.start(host.run)
        runner = host.runners["meter"]
        result = await host.upgrade_plugin("meter", "==9.9.9")
        assert result.result == "refused" and "9.9.9" in result.detail
        assert host.runners["meter"] is runner and host.entry("meter").state is EntryState.LOADED
        await host.shutdown()
