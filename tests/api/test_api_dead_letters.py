"""Dead letters through the WebSocket API: the same table and semantics as `sitegate dlq`, with roles.

A real site: the acklog adapter produces readings, the file sink refuses the value 7.0 for good
(four sink dead letters), the adapter's entry stores a payload it could not decode (an ingress
one). Viewers list them without payloads; operators read payloads and replay; admins purge.
"""

from __future__ import annotations

import attrs
import trio

from sitegate.cli import main
from sitegate.testing import wait_for
from tests.api.support import api_site, connect
from tests.dataplane.dp_helpers import FIXTURES, poison_site, sink_lines


async def ask(c, command: str, **fields) -> dict:
    return await c.call(command, **fields)      # `kind` is a field of these commands


async def _dead_letters(host) -> None:
    plane = host.services["dataplane"]
    await wait_for(lambda: plane.deliveries["out"].dead_letters == 4, 10, what="4 sink dead letters")
    host.entry("src").dead_letter(b'{"t": "n/a"}', source="dev/7/state", error="t: not a number", device="src.d7")
    await host.entry("src").dead_letters_committed()
    await plane.flush_dead_letters()
    # dlq.added comes at most once a second: this one tells of all five.
    await wait_for(lambda: [e.data["added"] for e in host.events.recent if e.kind == "dlq.added"] ==
                   [{"sink": 4, "ingress": 1}], 5, what="dlq.added")


async def test_viewers_list_without_payloads_operators_read_and_replay_admins_purge(tmp_path):
    text = poison_site(tmp_path, "api: {port: 0}\n")
    async with api_site(tmp_path, text=text, plugin_dirs=[FIXTURES]) as (host, server, tokens):
        await _dead_letters(host)
        plane = host.services["dataplane"]
        viewer, _ = tokens.create("viewer", "ui")
        operator, _ = tokens.create("operator", "op")
        admin, _ = tokens.create("admin", "boss")
        async with connect(server, viewer) as c:
            res = (await ask(c, "list_dead_letters"))["result"]
            assert res["stored"] == {"sink": 4, "ingress": 1} and res["more"] is False
            letters = res["dead_letters"]
            assert [d["kind"] for d in letters] == ["sink"] * 4 + ["ingress"]
            assert all("payload_hex" not in d and "payload_text" not in d for d in letters)
            assert letters[4] == {"id": 5, "kind": "ingress", "entry": "src", "source": "dev/7/state",
                                  "device": "src.d7", "bytes": 12, "failed_at": letters[4]["failed_at"],
                                  "error": "t: not a number", "attempts": 0, "replay_requested": None, "note": None}
            assert {(d["sink"], d["readings"], d["priority"]) for d in letters[:4]} == {("out", 1, "critical")}
            page = (await ask(c, "list_dead_letters", kind="sink", limit=3))["result"]
            assert [d["id"] for d in page["dead_letters"]] == [1, 2, 3] and page["more"] is True
            page = (await ask(c, "list_dead_letters", kind="sink", after_id=3, limit=3))["result"]
            assert [d["id"] for d in page["dead_letters"]] == [4] and page["more"] is False
            assert (await ask(c, "list_dead_letters", entry_id="src"))["result"]["dead_letters"][0]["id"] == 5
            bad = await ask(c, "list_dead_letters", limit=0)
            assert bad["error"] == {"code": "invalid_format",
                                    "message": "list_dead_letters: limit: expected 1 to 1000 dead letters, got 0"}
            for kind, fields in (("get_dead_letter", {"dead_letter_id": 5}), ("replay_dead_letters", {"all": True}),
                                 ("purge_dead_letters", {"all": True})):
                refused = await c.call(kind, **fields)
                assert refused["error"]["code"] == "unauthorized", refused
        async with connect(server, operator) as c:
            events = await c.call("subscribe_events", kinds=["dlq.*"])
            shown = (await ask(c, "get_dead_letter", dead_letter_id=5))["result"]
            assert shown["payload_text"] == '{"t": "n/a"}' and shown["payload_hex"] == b'{"t": "n/a"}'.hex()
            shown = (await ask(c, "get_dead_letter", dead_letter_id=1))["result"]
            [reading] = shown["readings"]
            assert reading["value"] == 7.0 and reading["msgId"] == f"t/{letters[0]['device']}/{letters[0]['seq']}"
            missing = await ask(c, "get_dead_letter", dead_letter_id=99)
            assert missing["error"] == {"code": "not_found", "message": "no dead letter with id 99"}
            vague = await ask(c, "replay_dead_letters")
            assert vague["error"] == {"code": "invalid_format", "message": "replay_dead_letters: say which dead "
                                                                           "letters: ids, all, entry_id or kind"}
            assert (await ask(c, "purge_dead_letters", kind="ingress"))["error"]["code"] == "unauthorized"
            # The destination accepts 7.0 now: two sink dead letters go back with their msgIds, the
            # ingress one is asked for and stays (acklog cannot decode again), with the reason.
            sink = host.sinks["out"]
            sink.cfg = attrs.evolve(sink.cfg, poison=None)
            res = await ask(c, "replay_dead_letters", ids=[1, 2, 5])
            assert res["success"], res
            assert res["result"]["sink"] == {"replayed": 2, "readings": 2}
            ingress = res["result"]["ingress"]
            assert (ingress["asked"], ingress["decoded"], ingress["failed"], ingress["pending"]) == (1, [], [], [])
            assert ingress["untried"] == [{"id": 5, "note": "entry 'src' (integration 'acklog') cannot decode its dead "
                                                            "letters again; `dlq show` them, `dlq purge` them"}]
            want = {f"t/{d['device']}/{d['seq']}" for d in letters[:2]}
            await wait_for(lambda: want <= {line["msgId"] for line in sink_lines(tmp_path / "out")}, 10,
                           what="the replayed readings delivered with their msgIds")
            kinds = set()
            while kinds != {"sink", "ingress"}:
                ev = await c.event(events["id"])
                assert ev["kind"] == "dlq.replayed", ev
                kinds.add(ev["data"]["kind"])
            assert ev["data"]["stored"] == {"sink": 2, "ingress": 1}
            assert plane.dead_letters == {"sink": 2, "ingress": 1}
            # New ones are announced (at most once a second, counted by kind).
            host.entry("src").dead_letter(b"\xff", source="dev/8/state", error="not UTF-8")
            ev = await c.event(events["id"])
            assert ev["kind"] == "dlq.added" and ev["data"]["added"] == {"sink": 0, "ingress": 1}
            assert ev["data"]["stored"] == {"sink": 2, "ingress": 2}
        async with connect(server, admin) as c:
            events = await c.call("subscribe_events", kinds=["dlq.*"])
            res = await ask(c, "purge_dead_letters", kind="ingress")
            assert res["result"] == {"purged": {"sink": 0, "ingress": 2}, "stored": {"sink": 2, "ingress": 0}}
            ev = await c.event(events["id"])
            assert ev["kind"] == "dlq.purged" and ev["data"]["purged"] == {"sink": 0, "ingress": 2}
            # `sitegate dlq purge` from another process: the site notices and says so.
            path = str(plane.wal.path)
            assert await trio.to_thread.run_sync(main, ["dlq", "purge", "--db", path, "--all"]) == 0
            ev = await c.event(events["id"], timeout=10)
            assert ev["kind"] == "dlq.changed" and ev["data"]["stored"] == {"sink": 0, "ingress": 0}
            assert (await ask(c, "list_dead_letters"))["result"] == {"dead_letters": [], "more": False,
                                                                     "stored": {"sink": 0, "ingress": 0}}
