"""What the API refuses: bad or missing tokens, roles, malformed input, huge frames, brute force,
revoked tokens, foreign origins, and clients too slow to keep up."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import trio
from trio_websocket import ConnectionClosed, ConnectionRejected, open_websocket_url

from sitegate.api.server import LoginLimiter
from sitegate.testing import wait_for
from tests.api.support import Client, api_site, connect


async def _login(server, token, **kw):
    """The server's answer to one login attempt and whether it then closed the connection."""
    async with open_websocket_url(server.ws_url, **kw) as ws:
        c = Client(ws)
        assert (await c.recv())["type"] == "auth_required"
        await c.send({"type": "auth", "access_token": token} if token is not None else {"type": "auth"})
        answer = await c.recv()
        with trio.fail_after(5):
            with pytest.raises(ConnectionClosed) as closed:
                await ws.get_message()
        return answer, closed.value.reason


@pytest.mark.parametrize("token", [None, "", "sg_00000000_wrong", "not-a-token"])
async def test_missing_or_wrong_token_gets_auth_invalid_and_is_disconnected(tmp_path, token):
    async with api_site(tmp_path) as (host, server, tokens):
        tokens.create("admin")
        answer, reason = await _login(server, token)
        assert answer["type"] == "auth_invalid"
        assert reason.code == 1008


async def test_a_command_before_auth_is_refused(tmp_path):
    async with api_site(tmp_path) as (host, server, tokens):
        async with open_websocket_url(server.ws_url) as ws:
            c = Client(ws)
            await c.recv()
            await c.send({"id": 1, "type": "get_site"})
            assert (await c.recv())["type"] == "auth_invalid"


async def test_viewer_may_read_but_not_command_or_reload(tmp_path):
    async with api_site(tmp_path) as (host, server, tokens):
        token, _ = tokens.create("viewer", "watcher")
        async with connect(server, token) as c:
            assert (await c.call("list_devices"))["success"]
            for kind, fields in [("device_command", {"device_id": "sim.dev0", "point": "temperature", "value": 1}),
                                 ("reload_entry", {"entry_id": "sim"}), ("diagnostics", {}),
                                 ("set_desired_config", {"device_id": "sim.dev0", "version": "2"})]:
                res = await c.call(kind, **fields)
                assert res["success"] is False and res["error"]["code"] == "unauthorized", res
                assert "watcher" in res["error"]["message"]
        op, _ = tokens.create("operator")
        async with connect(server, op) as c:
            res = await c.call("set_desired_config", device_id="sim.dev0", version="2")
            assert res["error"]["code"] == "unauthorized"   # admins only
        assert host.entry("sim").retries == 0


async def test_malformed_json_unknown_commands_bad_fields_and_reused_ids(tmp_path):
    async with api_site(tmp_path) as (host, server, tokens):
        token, _ = tokens.create("viewer")
        async with connect(server, token) as c:
            await c.ws.send_message("{not json")
            bad = await c.recv()
            assert bad["error"]["code"] == "invalid_format" and bad["id"] is None
            await c.ws.send_message("[1, 2]")
            assert (await c.recv())["error"]["code"] == "invalid_format"
            await c.send({"type": "ping"})
            assert "id: expected an integer" in (await c.recv())["error"]["message"]
            res = await c.call("make_coffee")
            assert res["error"]["code"] == "unknown_command" and "make_coffee" in res["error"]["message"]
            res = await c.call("subscribe_readings", max_rate=1000)
            assert res["error"]["code"] == "invalid_format" and "max_rate" in res["error"]["message"]
            res = await c.call("get_device", device_id="sim.dev0", colour="red")
            assert res["error"]["code"] == "invalid_format" and "colour" in res["error"]["message"]
            # ids must strictly increase
            await c.send({"id": 50, "type": "ping"})
            assert (await c.recv())["type"] == "pong"
            for reused in (50, 7):
                await c.send({"id": reused, "type": "ping"})
                err = await c.recv()
                assert err["error"]["code"] == "id_reuse" and err["id"] == reused
            # still usable after all that
            await c.send({"id": 51, "type": "ping"})
            assert await c.recv() == {"id": 51, "type": "pong"}


async def test_frames_over_one_mebibyte_close_the_connection(tmp_path):
    async with api_site(tmp_path) as (host, server, tokens):
        token, _ = tokens.create("viewer")
        async with connect(server, token, max_message_size=4 << 20) as c:
            await c.send({"id": 1, "type": "get_device", "device_id": "x" * 1000})   # big but fine
            assert (await c.recv())["error"]["code"] == "not_found"
            await c.ws.send_message(json.dumps({"id": 2, "type": "ping", "pad": "x" * (1 << 20)}))
            with trio.fail_after(5), pytest.raises(ConnectionClosed) as closed:
                while True:
                    await c.ws.get_message()
            assert closed.value.reason.code == 1009
        await wait_for(lambda: not server.connections, what="the connection to be gone")


async def test_logins_from_one_address_are_checked_at_once_within_the_failure_budget(tmp_path):
    async with api_site(tmp_path, failures=5, window=60) as (host, server, tokens):
        good, _ = tokens.create("viewer")
        real_check, state = server.tokens.check, {"now": 0, "most": 0}

        def slow_check(token):
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
            try:
                time.sleep(0.2)
                return real_check(token)
            finally:
                state["now"] -= 1

        server.tokens.check = slow_check

        async def login(token, answers):
            async with open_websocket_url(server.ws_url) as ws:
                await ws.get_message()
                await ws.send_message(json.dumps({"type": "auth", "access_token": token}))
                answers.append(json.loads(await ws.get_message())["type"])

        # Ten valid logins at once: checked five at a time (the failures the address may still make).
        answers: list[str] = []
        async with trio.open_nursery() as nursery:
            for _ in range(10):
                nursery.start_soon(login, good, answers)
        assert answers == ["auth_ok"] * 10 and state["most"] == 5
        # After three failures, at most two checks at once: even if both fail, the limit of 5 holds.
        for i in range(3):
            await login(f"sg_0000000{i}_wrong", [])
        state["most"] = 0
        answers = []
        async with trio.open_nursery() as nursery:
            for _ in range(6):
                nursery.start_soon(login, good, answers)
        assert answers == ["auth_ok"] * 6 and state["most"] == 2
        assert server.counters["auth_failed"] == 3 and not server._login_gates


async def test_a_thousand_failed_logins_are_rate_limited(tmp_path):
    async with api_site(tmp_path, failures=5, window=60) as (host, server, tokens):
        good, _ = tokens.create("admin")
        answers = []

        async def guess(worker: int) -> None:
            # 20 guessers at once: the limit must hold under concurrency too.
            for i in range(worker, 1000, 20):
                async with open_websocket_url(server.ws_url) as ws:
                    await ws.get_message()
                    await ws.send_message(json.dumps({"type": "auth", "access_token": f"sg_{i:08x}_guess{i}"}))
                    answers.append(json.loads(await ws.get_message()))

        async with trio.open_nursery() as nursery:
            for w in range(20):
                nursery.start_soon(guess, w)
        assert len(answers) == 1000
        assert all(a["type"] == "auth_invalid" for a in answers)
        limited = [a for a in answers if "too many failed logins" in a["message"]]
        assert len(limited) == 995
        # Only the first five guesses were even looked at.
        assert server.counters["auth_failed"] == 5 and server.counters["auth_refused"] == 995
        # While limited, even the right token is refused from that address.
        answer, _ = await _login(server, good)
        assert answer["type"] == "auth_invalid" and "too many failed logins" in answer["message"]


def test_login_limiter_forgets_failures_after_the_window():
    now = [0.0]
    lim = LoginLimiter(3, 10.0, clock=lambda: now[0])
    for _ in range(3):
        assert lim.blocked_for("1.2.3.4") == 0
        lim.failed("1.2.3.4")
    assert lim.blocked_for("1.2.3.4") == pytest.approx(10.0)
    assert lim.blocked_for("5.6.7.8") == 0          # other addresses are not affected
    now[0] = 10.5
    assert lim.blocked_for("1.2.3.4") == 0


async def test_revoking_a_token_with_the_cli_closes_its_open_connection(tmp_path):
    async with api_site(tmp_path) as (host, server, tokens):
        token, info = tokens.create("operator", "temp-access")
        other, _ = tokens.create("viewer", "stays")
        async with connect(server, token) as c, connect(server, other) as c2:
            assert (await c.call("get_site"))["success"]
            out = await trio.to_thread.run_sync(lambda: subprocess.run(
                [sys.executable, "-m", "sitegate.cli", "token", "revoke", str(host.loaded.path), "temp-access"],
                capture_output=True, text=True, timeout=60))
            assert out.returncode == 0, out.stderr
            assert info.id in out.stdout
            with trio.fail_after(5), pytest.raises(ConnectionClosed) as closed:
                while True:
                    await c.ws.get_message()
            assert closed.value.reason.code == 1008 and "revoked" in closed.value.reason.reason
            assert (await c2.call("get_site"))["success"]      # other tokens unaffected
        answer, _ = await _login(server, token)
        assert answer["type"] == "auth_invalid"


async def test_foreign_browser_origins_are_refused(tmp_path):
    async with api_site(tmp_path, extra="  origins: [https://ops.example]\n") as (host, server, tokens):
        token, _ = tokens.create("viewer")
        with pytest.raises(ConnectionRejected) as rejected:
            async with open_websocket_url(server.ws_url, extra_headers=[(b"Origin", b"https://evil.example")]):
                pass
        assert rejected.value.status_code == 403
        for origin in (b"https://ops.example", f"http://127.0.0.1:{server.port}".encode()):
            async with connect(server, token, extra_headers=[(b"Origin", origin)]) as c:
                assert (await c.call("get_site"))["success"]


async def _flood(c: Client, subs: int = 50) -> None:
    # Many fast subscriptions on one connection make its queue grow quickly; the client then
    # reads nothing at all (not even the replies).
    for i in range(subs):
        await c.send({"id": 1000 + i, "type": "subscribe_readings", "max_rate": 50})


async def test_a_stalled_client_is_disconnected_after_the_soft_limit_time_and_others_carry_on(tmp_path):
    # 200 devices make each readings message large, so socket buffers fill within moments.
    async with api_site(tmp_path, interval=0.1, devices=200, soft=100, soft_time=0.5,
                        hard=100_000) as (host, server, tokens):
        token, _ = tokens.create("viewer", "stalled")
        good, _ = tokens.create("viewer", "healthy")
        async with connect(server, good) as healthy:
            live = await healthy.call("subscribe_readings", devices=["sim.dev1"], max_rate=10)
            async with connect(server, token) as stalled:
                await _flood(stalled)
                await wait_for(lambda: server.counters["slow_disconnects"] == 1, timeout=20,
                               what="the stalled client to be disconnected")
            record = server.disconnects[-1]
            assert record["token"] == "stalled"
            assert 0.5 <= record["over_soft_for"] <= 0.5 + 0.3, record
            # The healthy client is still connected and served; ingestion goes on.
            before = host.pipeline.readings_in
            await wait_for(lambda: host.pipeline.readings_in >= before + 800, what="ingestion to go on")
            healthy.events.clear()
            for _ in range(3):
                assert (await healthy.event(live["id"]))["kind"] == "readings"
            assert [c.token.name for c in server.connections.values()] == ["healthy"]


async def test_a_client_reaching_the_hard_cap_is_disconnected_at_once(tmp_path):
    async with api_site(tmp_path, interval=0.1, devices=200, soft=50, soft_time=60, hard=200) as (host, server, tokens):
        token, _ = tokens.create("viewer", "greedy")
        async with connect(server, token) as c:
            await _flood(c)
            with trio.fail_after(20):
                await wait_for(lambda: server.counters["slow_disconnects"] == 1, timeout=20, what="hard cap")
        assert "hard cap" in server.disconnects[-1]["reason"]
        assert server.disconnects[-1]["over_soft_for"] < 60


async def test_subscriptions_per_connection_and_open_sockets_are_capped(tmp_path):
    from sitegate.api.server import MAX_SUBSCRIPTIONS
    async with api_site(tmp_path) as (host, server, tokens):
        token, _ = tokens.create("viewer")
        async with connect(server, token) as c:
            for i in range(MAX_SUBSCRIPTIONS):
                await c.send({"id": i + 1, "type": "subscribe_events", "kinds": ["none"]})
            for i in range(MAX_SUBSCRIPTIONS):
                assert (await c.reply(i + 1))["success"]
            c.next_id = MAX_SUBSCRIPTIONS + 1
            res = await c.call("subscribe_events", kinds=["x"])
            assert res["error"]["code"] == "not_allowed" and "at most" in res["error"]["message"]
        server.max_clients = 2
        idle = [await trio.open_tcp_stream("127.0.0.1", server.port) for _ in range(2)]   # never log in
        await wait_for(lambda: server._open_sockets == 2, what="two idle sockets held")
        extra = await trio.open_tcp_stream("127.0.0.1", server.port)
        with trio.fail_after(5):
            assert await extra.receive_some(100) == b""      # closed at once
        assert server.counters["refused_sockets"] == 1
        for s in idle + [extra]:
            await s.aclose()


async def test_a_client_that_falls_behind_and_catches_up_gets_every_frame_intact(tmp_path):
    # Socket buffers fill while it does not read, so frames are written in parts; each must
    # still arrive whole and in order once it reads again.
    async with api_site(tmp_path, interval=0.1, devices=200, soft=100_000, soft_time=60,
                        hard=200_000) as (host, server, tokens):
        token, _ = tokens.create("viewer", "dawdler")
        async with connect(server, token) as c:
            await _flood(c, subs=20)
            conn = next(iter(server.connections.values()))
            await wait_for(lambda: len(conn.queue) > 50, timeout=20, what="the socket to fill up")
            seen: dict[int, float] = {}
            with trio.fail_after(30):
                while conn.queue or len(seen) < 20:
                    msg = await c.recv()                      # JSON: a torn frame would not parse
                    if msg["type"] != "event":
                        continue
                    ts = max(p[1] for points in msg["event"]["readings"].values() for p in points.values())
                    assert ts >= seen.get(msg["id"], 0), "events of a subscription out of order"
                    seen[msg["id"]] = ts
            assert len(seen) == 20
            assert server.counters["slow_disconnects"] == 0
