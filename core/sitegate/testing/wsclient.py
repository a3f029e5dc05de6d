"""A WebSocket API client for tests: start the API beside a running site and talk to it as a UI would.

``async with api_client(host, role="operator") as ws: site = await ws.call("get_site")``.
Speaks the protocol of docs/websocket-api.md (auth, numbered commands, subscription events).
"""

from __future__ import annotations

import contextlib
import json
from typing import Any, AsyncIterator

import trio


class ApiClient:
    """`await c.call("get_site")` sends the next id and returns the result; events are kept by subscription id."""

    def __init__(self, ws):
        self.ws = ws
        self.next_id = 1
        self.events: dict[int, list[dict]] = {}
        self.backlog: list[dict] = []

    async def recv(self, timeout: float = 5.0) -> dict:
        with trio.fail_after(timeout):
            return json.loads(await self.ws.get_message())

    async def send(self, msg: dict) -> None:
        await self.ws.send_message(json.dumps(msg))

    async def call(self, kind: str, /, *, reply_within: float = 10.0, **fields: Any) -> dict:
        """Send command `kind` with `fields` (any names: `kind`, `timeout` and `type` are fields of
        some commands) and return its reply, waiting at most `reply_within` seconds."""
        mid = self.next_id
        self.next_id += 1
        await self.send({"id": mid, "type": kind, **fields})
        return await self.reply(mid, reply_within)

    async def reply(self, mid: int, timeout: float = 10.0) -> dict:
        """The result message for command `mid`; events and other messages arriving first are kept."""
        with trio.fail_after(timeout):
            while True:
                msg = await self.recv(timeout)
                if msg.get("type") == "event":
                    self.events.setdefault(msg["id"], []).append(msg["event"])
                elif msg.get("id") == mid:
                    return msg
                else:
                    self.backlog.append(msg)

    async def event(self, sub: int, timeout: float = 5.0) -> dict:
        """The next event of subscription `sub` (the id of the subscribe call)."""
        with trio.fail_after(timeout):
            while not self.events.get(sub):
                msg = await self.recv(timeout)
                if msg.get("type") == "event":
                    self.events.setdefault(msg["id"], []).append(msg["event"])
                else:
                    self.backlog.append(msg)
        return self.events[sub].pop(0)


@contextlib.asynccontextmanager
async def api_client(host, *, role: str = "operator") -> AsyncIterator[ApiClient]:
    """Start the WebSocket API for `host` (if the site has not) on a free port, create a token with
    `role` and yield an authenticated `ApiClient`; stops what it started afterwards."""
    from trio_websocket import open_websocket_url

    from ..api import start_api
    from ..api.tokens import TokenStore

    async with trio.open_nursery() as nursery:
        server = host.services.get("api")
        started = server is None
        if started:
            server = await start_api(host, nursery)
            if server is None:
                raise RuntimeError("the site has `api: {enabled: false}`; enable it to use api_client")
        token, _ = await trio.to_thread.run_sync(lambda: TokenStore(host.state_dir).create(role, "test"))
        try:
            async with open_websocket_url(server.ws_url) as ws:
                client = ApiClient(ws)
                first = await client.recv()
                if first.get("type") != "auth_required":
                    raise AssertionError(f"API greeting: expected auth_required, got {first}")
                await client.send({"type": "auth", "access_token": token})
                ok = await client.recv()
                if ok.get("type") != "auth_ok":
                    raise AssertionError(f"API auth with a fresh {role} token: expected auth_ok, got {ok}")
                yield client
        finally:
            if started:
                await server.aclose()
                host.services.pop("api", None)
            nursery.cancel_scope.cancel()
