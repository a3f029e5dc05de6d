"""Ingress dead letters: payloads an adapter could not decode, kept raw in the WAL's dead-letter table.

entry.dead_letter stores every one (batched through the WAL's writer, nothing blocks),
within a cap; `sitegate dlq` lists, shows and purges them beside sink dead letters, and
`dlq replay` asks the running site to hand them back to their entry, which decodes them again
with its current mapping (EntryContext.on_redecode; the mqtt and mqttsn tests do it end to end).
"""

from __future__ import annotations

import json
import sqlite3

import trio

from sitegate.cli import main
from sitegate.dataplane.wal import connect
from sitegate.testing import Recorder, running_site, wait_for
from tests.dataplane.dp_helpers import FIXTURES

SITE = """
site: t
entries:
  - {id: src, domain: acklog, config: {ack_path: ACK, limit: 1}}
"""


def _site(tmp_path) -> str:
    return SITE.replace("ACK", str(tmp_path / "ack"))


def _rows(path) -> list[tuple]:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT kind, sink, source, device, error, failed_at, body FROM dead_letters "
                          "ORDER BY id").fetchall()


async def test_every_dead_letter_is_stored_in_one_write_and_committed_before_what_follows(tmp_path):
    async with running_site(tmp_path, _site(tmp_path), plugin_dirs=[FIXTURES]) as host:
        entry = host.entry("src")
        plane = host.services["dataplane"]
        groups = plane.wal.committed_groups
        for i in range(500):
            entry.dead_letter(b"\x00bad" + bytes([i % 256]), source=f"dev/{i}", error=ValueError(f"bad {i}"),
                              device="src.d" if i == 0 else None, at=1000.0 + i)
        assert plane.ingress_dead_letters["stored"] == 0, "dead_letter returns at once"
        await entry.dead_letters_committed()
        assert plane.ingress_dead_letters["stored"] == 500
        assert plane.wal.committed_groups - groups <= 3, "stored in a few group commits, not one each"
        path = plane.wal.path
        assert plane.describe()["ingress_dead_letters"]["stored"] == 500
        from sitegate.observability.exporters import dataplane as exported
        assert {(m.name, m.labels["outcome"]): m.value for m in exported(plane, host)
                if m.name == "ingress_dead_letters_total"} == {
            ("ingress_dead_letters_total", "stored"): 500, ("ingress_dead_letters_total", "removed_by_cap"): 0,
            ("ingress_dead_letters_total", "lost"): 0, ("ingress_dead_letters_total", "write_failures"): 0}
    rows = _rows(path)
    assert len(rows) == 500
    assert rows[0] == ("ingress", "src", "dev/0", "src.d", "bad 0", 1000.0, b"\x00bad\x00")
    assert rows[499][2:6] == ("dev/499", "", "bad 499", 1499.0)


async def test_the_table_keeps_the_newest_within_its_cap(tmp_path, monkeypatch):
    from sitegate.dataplane.plane import DataPlane

    monkeypatch.setattr(DataPlane, "ingress_dead_letters_max", 50)
    monkeypatch.setattr(DataPlane, "ingress_payload_max", 10)
    async with running_site(tmp_path, _site(tmp_path), plugin_dirs=[FIXTURES]) as host:
        entry = host.entry("src")
        plane = host.services["dataplane"]
        for i in range(120):
            entry.dead_letter(f"{i:04d}".encode(), source="t", error="bad")
            if i % 7 == 0:
                await entry.dead_letters_committed()
        entry.dead_letter(b"x" * 25, source="big", error="too long")
        await entry.dead_letters_committed()
        assert plane.ingress_dead_letters["removed_by_cap"] == 71
        path = plane.wal.path
    rows = _rows(path)
    assert len(rows) == 50
    assert [bytes(r[6]) for r in rows[:-1]] == [f"{i:04d}".encode() for i in range(71, 120)], "the oldest went"
    assert bytes(rows[-1][6]) == b"x" * 10 and "cut to its first 10 of 25 bytes" in rows[-1][4]


def _old_file(path) -> None:
    """A WAL made before ingress dead letters: dead_letters without kind/source, one sink dead letter."""
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE dead_letters(id INTEGER PRIMARY KEY AUTOINCREMENT, sink TEXT NOT NULL, prio INTEGER NOT NULL,
            device TEXT NOT NULL, seq INTEGER NOT NULL, n INTEGER NOT NULL, error TEXT NOT NULL,
            failed_at REAL NOT NULL, body BLOB NOT NULL);
        CREATE TABLE wal_records(id INTEGER PRIMARY KEY AUTOINCREMENT, prio INTEGER NOT NULL, device TEXT NOT NULL,
            seq INTEGER NOT NULL, n INTEGER NOT NULL, targets TEXT NOT NULL, created REAL NOT NULL,
            size INTEGER NOT NULL, body BLOB NOT NULL);
    """)
    from sitegate.dataplane.wal import encode_body
    db.execute("INSERT INTO dead_letters(sink, prio, device, seq, n, error, failed_at, body) "
               "VALUES ('out', 0, 'dev', 7, 1, 'refused', 1.0, ?)", (encode_body(["p"], [1.5], [1.0], None, "s"),))
    db.commit()
    db.close()


def test_older_files_are_migrated_and_dlq_tells_the_kinds_apart(tmp_path, capsys):
    path = tmp_path / "site.sqlite"
    _old_file(path)
    conn = connect(path)          # what the site does when it opens the file
    from sitegate.dataplane.wal import store_ingress_dead_letters
    conn.execute("BEGIN")
    store_ingress_dead_letters(conn, [("mq", "", "not JSON: x", 2.0, b"{oops", "plant/a/data", "")], [-1, 0],
                               max_rows=10, max_bytes=1000)
    conn.execute("COMMIT")
    conn.close()
    capsys.readouterr()
    assert main(["dlq", "list", "--db", str(path), "--json"]) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(d["id"], d["kind"], d["entry"]) for d in listed] == [(1, "sink", "out"), (2, "ingress", "mq")]
    assert listed[1]["source"] == "plant/a/data" and listed[1]["error"] == "not JSON: x" and listed[1]["bytes"] == 5
    assert main(["dlq", "list", "--db", str(path)]) == 0
    out = capsys.readouterr().out
    assert "2 dead letter(s): 1 sink, 1 ingress" in out and "plant/a/data" in out
    assert main(["dlq", "show", "--db", str(path), "2"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["payload_text"] == "{oops" and shown["payload_hex"] == b"{oops".hex()
    # replay: sink ones go back into the WAL at once; ingress ones are asked for, and with no site
    # running to decode them they stay asked for, which replay says (and its exit status)
    assert main(["dlq", "replay", "--db", str(path), "--all", "--wait", "0.3"]) == 1
    out = capsys.readouterr().out
    assert "replayed 1 sink dead letter(s) (1 readings)" in out
    assert "ingress: 0 of 1 dead letter(s) decoded" in out and "1 not done after 0.3 s (is the site running?)" in out
    assert main(["dlq", "list", "--db", str(path)]) == 0
    assert "[replay asked for]" in capsys.readouterr().out
    assert main(["dlq", "purge", "--db", str(path), "--kind", "ingress"]) == 0
    assert "purged 1" in capsys.readouterr().out
    assert main(["dlq", "list", "--db", str(path)]) == 0
    assert "no dead letters" in capsys.readouterr().out


async def test_a_running_site_migrates_an_older_file(tmp_path):
    site = _site(tmp_path)
    async with running_site(tmp_path, site, plugin_dirs=[FIXTURES]) as host:
        path = host.services["dataplane"].wal.path
    path.unlink()
    for extra in ("-wal", "-shm"):
        path.with_name(path.name + extra).unlink(missing_ok=True)
    _old_file(path)
    async with running_site(tmp_path, site, plugin_dirs=[FIXTURES]) as host:
        entry = host.entry("src")
        entry.dead_letter(b"?", source="x", error="bad")
        await entry.dead_letters_committed()
    assert [(r[0], r[1]) for r in _rows(path)] == [("sink", "out"), ("ingress", "src")]


async def test_a_replay_asked_while_the_site_was_down_is_settled_when_it_runs(tmp_path, capsys):
    """The request waits in the file; the started site hands it on, and an entry that cannot decode
    again (acklog registers no on_redecode) leaves the dead letter as it is, saying why."""
    site = _site(tmp_path)
    async with running_site(tmp_path, site, plugin_dirs=[FIXTURES]) as host:
        entry = host.entry("src")
        entry.dead_letter(b"\x01\x02", source="dev/1", error="bad frame", at=1234.5)
        await entry.dead_letters_committed()
        path = host.services["dataplane"].wal.path
    capsys.readouterr()
    assert main(["dlq", "replay", "--db", str(path), "--kind", "ingress", "--wait", "0"]) == 0
    assert "asked the site to decode 1 ingress dead letter(s) again" in capsys.readouterr().out
    async with running_site(tmp_path, site, plugin_dirs=[FIXTURES]) as host:
        plane = host.services["dataplane"]
        await wait_for(lambda: plane.ingress_replays["untried"] == 1, 10, what="the asked-for replay settled")
    with sqlite3.connect(path) as db:
        row = db.execute("SELECT error, failed_at, body, attempts, replay, note FROM dead_letters").fetchone()
    assert row[:5] == ("bad frame", 1234.5, b"\x01\x02", 0, 0)
    assert "entry 'src' (integration 'acklog') cannot decode its dead letters again" in row[5]
    assert main(["dlq", "list", "--db", str(path)]) == 0
    assert "[not replayed: entry 'src' (integration 'acklog') cannot" in capsys.readouterr().out


async def test_the_entry_decodes_them_again_and_they_go_only_after_its_readings_are_committed(tmp_path, capsys):
    """The data plane's side of `dlq replay`, with a redecoder registered through the public API
    (as an adapter does in setup_entry): results per letter, errors kept, a redecoder that raises
    leaves every letter it was given in place."""
    from sitegate.entries import IngressDeadLetter
    from sitegate.model import Batch

    async with running_site(tmp_path, _site(tmp_path), plugin_dirs=[FIXTURES]) as host:
        entry = host.entry("src")
        plane = host.services["dataplane"]
        path = plane.wal.path
        seen: list[IngressDeadLetter] = []
        present_while_decoding: list[int] = []

        async def redecode(letters: list[IngressDeadLetter]) -> list[str | None]:
            seen.extend(letters)
            with sqlite3.connect(path) as db:       # nothing is deleted before we return
                present_while_decoding.append(db.execute("SELECT count(*) FROM dead_letters").fetchone()[0])
            if any(dl.payload == b"crash" for dl in letters):
                raise RuntimeError("decoder bug")
            results: list[str | None] = []
            for dl in letters:
                point, _, value = dl.payload.decode().partition("=")
                if not value:
                    results.append(f"{dl.source}: no '=' in {dl.payload!r}")
                    continue
                await entry.publish(Batch("src.fixed", [point], [float(value)], [dl.received_at]))
                results.append(None)
            return results

        entry.on_redecode(redecode)
        for i, payload in enumerate((b"t=1.5", b"garbage", b"h=40")):
            entry.dead_letter(payload, source=f"dev/{i}", error="old mapping", at=100.0 + i, context=f"c{i}")
        await entry.dead_letters_committed()
        rec = Recorder(host)
        assert await trio.to_thread.run_sync(main, ["dlq", "replay", "--db", str(path), "--all"]) == 1
        out = capsys.readouterr().out
        assert "ingress: 2 of 3 dead letter(s) decoded" in out and "  2: still fails: dev/1: no '=' in b'garbage'" in out
        assert [(dl.id, dl.payload, dl.source, dl.received_at, dl.context, dl.attempts) for dl in seen] == [
            (1, b"t=1.5", "dev/0", 100.0, "c0", 0), (2, b"garbage", "dev/1", 101.0, "c1", 0),
            (3, b"h=40", "dev/2", 102.0, "c2", 0)]
        assert present_while_decoding == [3]
        assert rec.readings("src.fixed") == [("src.fixed", "t", 1.5, 100.0), ("src.fixed", "h", 40.0, 102.0)]
        # Again: the one left is handed over with its attempt, and fails again.
        seen.clear()
        assert await trio.to_thread.run_sync(main, ["dlq", "replay", "--db", str(path), "2"]) == 1
        assert [(dl.id, dl.attempts) for dl in seen] == [(2, 1)]
        # A redecoder that raises: every letter it was given stays as it was, with the reason.
        entry.dead_letter(b"crash", source="dev/9", error="old mapping", at=109.0)
        await entry.dead_letters_committed()
        capsys.readouterr()
        assert await trio.to_thread.run_sync(main, ["dlq", "replay", "--db", str(path), "--all"]) == 1
        out = capsys.readouterr().out
        assert "not replayed: entry 'src' failed to decode them again: RuntimeError: decoder bug" in out
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT id, error, attempts, replay FROM dead_letters ORDER BY id").fetchall()
    assert rows == [(2, "dev/1: no '=' in b'garbage'", 2, 0), (4, "old mapping", 0, 0)]
