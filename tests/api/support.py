"""Running a site with the API in a test, and a small WebSocket client that speaks the protocol."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, AsyncIterator

import trio
from trio_websocket import open_websocket_url

from sitegate.api import start_api
from sitegate.api.tokens import TokenStore
from sitegate.testing import running_site
from sitegate.testing.wsclient import ApiClient

SITE = """
site: apitest
entries:
  - {{id: sim, domain: simulator, config: {{devices: {devices}, interval: {interval}}}}}
api:
  port: 0
  queue_soft: {soft}
  queue_soft_time: {soft_time}
  queue_hard: {hard}
  auth_failures: {failures}
  auth_window: {window}
{extra}"""


@contextlib.asynccontextmanager
async def api_site(tmp_path: Path, *, interval: float = 0.05, devices: int = 2, soft: int = 1024, soft_time: float = 10,
                   hard: int = 4096, failures: int = 5, window: float = 60, extra: str = "", text: str | None = None,
                   revoke_poll: float = 0.1, services: bool = False, **kw) -> AsyncIterator[Any]:
    """A running site (simulator `sim`, 2 devices) with the API on a free port; yields (host, server, tokens)."""
    text = text or SITE.format(interval=interval, devices=devices, soft=soft, soft_time=soft_time, hard=hard, failures=failures,
                               window=window, extra=extra)
    async with running_site(tmp_path, text, services=services, **kw) as host:
        async with trio.open_nursery() as nursery:
            server = await start_api(host, nursery, revoke_poll=revoke_poll)
            tokens = TokenStore(host.state_dir)
            try:
                yield host, server, tokens
            finally:
                await server.aclose()
                nursery.cancel_scope.cancel()


# The protocol client plugin authors use (sitegate.testing); the API's own tests use the same one.
Client = ApiClient


@contextlib.asynccontextmanager
async def connect(server, token: str | None, **kw) -> AsyncIterator[Client]:
    """An authenticated client (asserts auth_ok) on `server`."""
    async with open_websocket_url(server.ws_url, **kw) as ws:
        c = Client(ws)
        first = await c.recv()
        assert first["type"] == "auth_required", first
        await c.send({"type": "auth", "access_token": token})
        ok = await c.recv()
        assert ok["type"] == "auth_ok", ok
        yield c
