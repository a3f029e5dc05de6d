"""sitegate's WebSocket API and dashboard: `start_api` runs them beside a site (a runner service).

Also starts the device registry (twins.py) the API and dashboard show. See
docs/websocket-api.md for the protocol and `sitegate token` for access.
"""

from __future__ import annotations

import errno
import logging
from typing import TYPE_CHECKING

import trio

from ..errors import SitegateError
from .tokens import TokenStore, ensure_demo_token  # noqa: F401

if TYPE_CHECKING:  # pragma: no cover
    from ..host import SiteHost
    from .server import ApiServer

log = logging.getLogger(__name__)


async def start_twins(host: "SiteHost", nursery: trio.Nursery):
    from ..twins import Twins
    twins = host.services.get("twins")
    if twins is None:
        twins = await trio.to_thread.run_sync(Twins, host)     # opens SQLite: off the event loop
        host.services["twins"] = twins
        await nursery.start(twins.run)
    return twins


async def start_api(host: "SiteHost", nursery: trio.Nursery, **kw) -> "ApiServer | None":
    """Start twins and, when `api.enabled`, the API server; logs the dashboard URL (and a demo token
    when `api.demo_token` names a role)."""
    from .server import ApiServer
    await start_twins(host, nursery)
    settings = host.loaded.site.api
    if not settings.enabled:
        return None
    if host.services.get("api") is not None:       # started already (once per site)
        return host.services["api"]
    if "tokens" not in kw:
        kw["tokens"] = await trio.to_thread.run_sync(TokenStore, host.state_dir)
    server = ApiServer(host, settings, **kw)
    try:
        await nursery.start(server.run)
    except OSError as exc:      # the port is taken, the address is not this machine's, a TLS file is unreadable
        where = f"{host.loaded.path}: api: cannot serve the WebSocket API and dashboard on {settings.host}:{settings.port}"
        if exc.errno in (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL):
            raise SitegateError(f"{where} ({exc.strerror}); set api.port to a free port (0 picks one) "
                                f"or api.enabled: false") from None
        raise SitegateError(f"{where}: {exc}") from None
    host.services["api"] = server
    host.advertise("api", server.ws_url)          # runtime.json: clients on this machine find the port
    host.advertise("dashboard", server.url)
    if settings.demo_token:
        token = await trio.to_thread.run_sync(ensure_demo_token, host.state_dir, settings.demo_token)
        log.info("dashboard on %s#token=%s (a fresh %s token; WebSocket API at %s)",
                 server.url, token, settings.demo_token, server.ws_url)
    else:
        log.info("dashboard on %s (WebSocket API at %s); create a token with: sitegate token create %s --role viewer",
                 server.url, server.ws_url, host.loaded.path)
    return server
