"""With certificate files in the site's `api` section, the dashboard is served over HTTPS and the
API over wss; a client that trusts the CA connects, plain ws is refused."""

from __future__ import annotations

import ssl
import urllib.request

import trio

from sitegate.testing.mosquitto import Certificates
from tests.api.support import api_site, connect


async def test_wss_and_https_with_the_sites_certificate(tmp_path):
    certs = Certificates(tmp_path / "certs")
    extra = f"  tls_cert: {certs.server_cert}\n  tls_key: {certs.server_key}\n"
    async with api_site(tmp_path, extra=extra) as (host, server, tokens):
        assert server.url.startswith("https://") and server.ws_url.startswith("wss://")
        token, _ = tokens.create("viewer")
        ctx = ssl.create_default_context(cafile=str(certs.ca))
        async with connect(server, token, ssl_context=ctx) as c:
            assert (await c.call("get_site"))["result"]["site"] == "apitest"
        page = await trio.to_thread.run_sync(
            lambda: urllib.request.urlopen(server.url, context=ctx, timeout=10).read())
        assert b"app.js" in page
        # A plain-text upgrade request on the TLS port gets no answer: the connection just closes.
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        await stream.send_all(b"GET /api/websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n")
        with trio.fail_after(5):
            assert await stream.receive_some(1000) == b""
        await stream.aclose()
