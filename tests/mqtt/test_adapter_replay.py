"""Replaying the mqtt adapter's ingress dead letters once its mapping is fixed, against a real Mosquitto.

Payloads the mapping cannot read are dead-lettered; the site file's mapping is changed and applied
(the entry reloads with it); `sitegate dlq replay` asks, the running site's data plane hands them to
the entry, and the readings arrive with the payloads' own timestamps while the dead letters go.
"""

from __future__ import annotations

import json
import sqlite3

import pytest
import trio

from sitegate.cli import main
from sitegate.config import load_site
from sitegate.testing.harness import Recorder, running_site, wait_for, write_site
from sitegate.testing.mosquitto import publish_messages
from tests.dataplane.dp_helpers import FIXTURES, sink_lines
from tests.mqtt.helpers import loaded, mqtt_entry, site_with

pytestmark = pytest.mark.mosquitto

SUB = """
subscribe:
  - filter: "factory/+/+/data"
    topic: "factory/{zone}/{device}/data"
    device: "{zone}.{device}"
    format: json
    values: {temp: "m.KEY"}
    timestamp: ts
  - {filter: "line/+", device: "{1}", format: json, values: {temp: "m.KEY"}}
"""


def _site(broker, key: str, out) -> str:
    # A route to a file sink: readings are committed to the WAL and delivered, as in a real site.
    return site_with(mqtt_entry("local", broker, extra=SUB.replace("KEY", key)),
                     f"  - {{id: out, domain: filesink, config: {{path: {out}}}}}\n") + \
        'routes:\n  - {from: ["local.*/*"], to: [out]}\n'


def _dead_letters(path) -> list[tuple]:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT id, source, error, attempts, replay, note, body FROM dead_letters "
                          "WHERE kind='ingress' ORDER BY id").fetchall()


async def _dlq(*args: str) -> int:
    # The CLI waits for the running site, which runs on this trio loop: call it from a thread.
    return await trio.to_thread.run_sync(main, ["dlq", *args])


async def test_dead_letters_decode_with_the_fixed_mapping_and_enter_the_pipeline(mosquitto, tmp_path, capsys):
    broker = mosquitto()
    out_file = tmp_path / "out.jsonl"
    async with running_site(tmp_path, _site(broker, "temp", out_file), plugin_dirs=[FIXTURES]) as host:
        rec = Recorder(host)
        await loaded(host, "local")
        # New device firmware renamed the key: the mapping (m.temp) cannot read these.
        renamed = [("factory/z1/press7/data", json.dumps({"m": {"temperature": 20 + i}, "ts": 1700000100 + i}))
                   for i in range(3)]
        await trio.to_thread.run_sync(lambda: publish_messages(broker, [
            *renamed, ("factory/z1/press7/data", b"{not json"),
            ("factory/z2/oven1/data", json.dumps({"m": {"temp": 180.5}, "ts": 1700000200})),
            ("line/belt", json.dumps({"m": {"temperature": 31.5}}))]))    # no time of its own
        ingest = host.entry("local").data["ingest"]
        await wait_for(lambda: ingest.counters["malformed"] == 5, 10, what="5 malformed")
        await wait_for(lambda: rec.readings(), 10, what="the good message")
        wal = host.services["dataplane"].wal.path
        await host.entry("local").dead_letters_committed()
        before = _dead_letters(wal)
        assert [(r[1], r[3], r[4]) for r in before] == [("factory/z1/press7/data", 0, 0)] * 4 + [("line/belt", 0, 0)]
        with sqlite3.connect(wal) as db:
            belt_received = db.execute("SELECT failed_at FROM dead_letters WHERE source='line/belt'").fetchone()[0]
        assert all("no 'temp'" in r[2] for r in before[:3]) and "not JSON" in before[3][2]

        # The integrator fixes the mapping in the site file; the entry reloads with it.
        path = write_site(tmp_path, _site(broker, "temperature", out_file))
        summary = await host.apply(load_site(path))
        assert summary["reloaded"] == ["local"]
        await loaded(host, "local")
        capsys.readouterr()
        assert await _dlq("replay", "--db", str(wal), "--kind", "ingress") == 1, "one of them still fails"
        out = capsys.readouterr().out
        assert "ingress: 4 of 5 dead letter(s) decoded with the current mapping" in out
        assert f"  {before[3][0]}: still fails: not JSON" in out
        # Their readings entered the pipeline with the payloads' own timestamps, as if just arrived.
        replayed = [r for r in rec.readings("local.z1.press7")]
        assert replayed == [("local.z1.press7", "temp", 20 + i, 1700000100.0 + i) for i in range(3)]
        # Without a time of its own, a payload's readings get the time it first arrived, not the replay's.
        assert rec.readings("local.belt") == [("local.belt", "temp", 31.5, belt_received)]
        assert host.entry("local").data["ingest"].counters["redecoded"] == 4
        # Only the one that still fails is left, with its new error and one attempt.
        [left] = _dead_letters(wal)
        assert (left[0], left[3], left[4], left[5], bytes(left[6])) == (before[3][0], 1, 0, "", b"{not json")
        assert "not JSON" in left[2]
        assert host.services["dataplane"].describe()["ingress_replays"] == {"decoded": 4, "failed_again": 1,
                                                                            "untried": 0}

        # With the entry unloaded, a replay leaves the dead letter as it is and says why.
        await host.unload_entry("local")
        assert await _dlq("replay", "--db", str(wal), str(left[0])) == 1
        out = capsys.readouterr().out
        assert f"  {left[0]}: not replayed: entry 'local' is not running (not_loaded)" in out, out
        [still] = _dead_letters(wal)
        assert still[:5] == left[:5] and "entry 'local' is not running" in still[5]
        assert await _dlq("list", "--db", str(wal)) == 0
        assert "[failed 1 replay(s)] [not replayed: entry 'local' is not running" in capsys.readouterr().out
        # They were committed to the WAL before their dead letters went, and are delivered like any others.
        await wait_for(lambda: len(sink_lines(out_file)) == 5, 10, what="5 readings delivered")
    assert sorted((d["device"], d["value"], d["ts"]) for d in sink_lines(out_file)) == [
        ("local.belt", 31.5, belt_received),
        ("local.z1.press7", 20, 1700000100.0), ("local.z1.press7", 21, 1700000101.0),
        ("local.z1.press7", 22, 1700000102.0), ("local.z2.oven1", 180.5, 1700000200.0)]
