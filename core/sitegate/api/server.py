"""The WebSocket API server (Home Assistant's protocol shapes) and the dashboard, on one port.

Each TCP connection is sniffed (http.py): upgrades become WebSocket clients at
/api/websocket, other GETs get the dashboard's files. A client authenticates
with a token (tokens.py), then sends commands (messages.py) that handlers.py
answers; pushes go through its bounded queue (connection.py).
"""

from __future__ import annotations

import collections
import json
import logging
import ssl
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import trio
from trio_websocket import ConnectionClosed, wrap_server_stream

from .. import __version__
from .connection import Connection
from .fanout import EventFanout, ReadingsHub, _dumps
from .frames import accept
from .handlers import HANDLERS, ApiError
from .http import Replay, answer, read_head
from .messages import BadCommand, parse_command, role_rank
from .schema import render as render_schema
from .tokens import TokenInfo, TokenStore

if TYPE_CHECKING:  # pragma: no cover
    from ..config.schema import ApiSettings
    from ..host import SiteHost

log = logging.getLogger(__name__)

WS_PATH = "/api/websocket"
MAX_FRAME = 1 << 20          # frames over 1 MiB close the connection (code 1009)
AUTH_TIMEOUT = 10.0
MAX_IN_FLIGHT = 8            # commands of one client running at once; more wait (its own backpressure)
MAX_SUBSCRIPTIONS = 100      # per connection
MAX_CLIENTS = 1000           # TCP connections at once (sockets that never log in included)


class LoginLimiter:
    """Failed logins per remote address: after `limit` failures within `window` seconds, further
    attempts from that address are refused without looking at the token."""

    def __init__(self, limit: int, window: float, clock=time.monotonic):
        self.limit, self.window, self.clock = limit, window, clock
        self.failures: dict[str, collections.deque[float]] = {}
        self.refused = 0

    def _recent(self, addr: str) -> collections.deque[float]:
        q = self.failures.setdefault(addr, collections.deque())
        cutoff = self.clock() - self.window
        while q and q[0] < cutoff:
            q.popleft()
        return q

    def blocked_for(self, addr: str) -> float:
        q = self._recent(addr)
        if len(q) < self.limit:
            if not q:
                self.failures.pop(addr, None)
            return 0.0
        return q[0] + self.window - self.clock()

    def remaining(self, addr: str) -> int:
        """Failed logins `addr` may still make before it is refused."""
        q = self.failures.get(addr)
        return self.limit - (len(self._recent(addr)) if q else 0)

    def failed(self, addr: str) -> None:
        self._recent(addr).append(self.clock())
        if len(self.failures) > 10_000:     # many addresses: forget the quiet ones
            for a in [a for a, q in self.failures.items() if not q][:5_000]:
                del self.failures[a]


class _LoginGate:
    """Token checks in flight from one address, and a wake-up for those waiting for a slot."""

    __slots__ = ("users", "in_flight", "changed")

    def __init__(self) -> None:
        self.users = 0          # logins from the address being handled (checked or waiting)
        self.in_flight = 0
        self.changed = trio.Event()


def _result(mid: int | None, result: Any) -> str:
    return _dumps({"id": mid, "type": "result", "success": True, "result": result})


def _error(mid: int | None, code: str, message: str) -> str:
    return _dumps({"id": mid, "type": "result", "success": False, "error": {"code": code, "message": message}})


class ApiServer:
    def __init__(self, host: "SiteHost", settings: "ApiSettings", *, tokens: TokenStore | None = None,
                 revoke_poll: float = 1.0, max_clients: int = MAX_CLIENTS):
        self.host = host
        self.settings = settings
        self.tokens = tokens or TokenStore(host.state_dir)
        self.limiter = LoginLimiter(settings.auth_failures, float(settings.auth_window))
        self._login_gates: dict[str, _LoginGate] = {}
        self.revoke_poll = revoke_poll
        self.max_clients = max_clients
        self._open_sockets = 0
        self.connections: dict[int, Connection] = {}
        self.readings = ReadingsHub(host)
        self.event_fanout = EventFanout(host)
        self._sinks: dict[str, dict[str, Any]] = {}
        self._remove_sink_cb = host.events.add_callback(self._on_sink_event)
        self.schema_text = render_schema()
        self.port = 0
        self.scheme = "https" if settings.tls_cert else "http"
        self.counters = {"connections": 0, "deflate_connections": 0, "auth_failed": 0, "auth_refused": 0, "slow_disconnects": 0,
                         "revoked_disconnects": 0, "commands": 0, "http_requests": 0, "refused_sockets": 0}
        self.disconnects: list[dict[str, Any]] = []       # the last few slow-client disconnects, for diagnostics
        self._scope = trio.CancelScope()

    # --- service ------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.settings.host}:{self.port}/"

    @property
    def ws_url(self) -> str:
        return f"{'wss' if self.scheme == 'https' else 'ws'}://{self.settings.host}:{self.port}{WS_PATH}"

    def _ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.settings.tls_cert, self.settings.tls_key or None)
        return ctx

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(self.settings.port, host=self.settings.host)
        self.port = listeners[0].socket.getsockname()[1]
        if self.settings.tls_cert:
            ctx = self._ssl_context()
            listeners = [trio.SSLListener(lst, ctx, https_compatible=True) for lst in listeners]
        with self._scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self.readings.run)
                nursery.start_soon(self._janitor)
                nursery.start_soon(self._watch_revocations)
                await nursery.start(trio.serve_listeners, self._handle, listeners)
                task_status.started(self)
                await trio.sleep_forever()

    async def aclose(self) -> None:
        self._remove_sink_cb()
        self.event_fanout.remove()
        for conn in list(self.connections.values()):
            conn.kill(1001, "server shutting down")
        self._scope.cancel()

    # --- per TCP connection --------------------------------------------------------------------
    async def _handle(self, stream: trio.abc.Stream) -> None:
        remote = _remote(stream)
        if self._open_sockets >= self.max_clients:
            # Sockets cost memory even before they log in: beyond the cap, close at once.
            self.counters["refused_sockets"] += 1
            with trio.move_on_after(0.5) as cs:
                cs.shield = True
                await stream.aclose()
            return
        self._open_sockets += 1
        try:
            with trio.move_on_after(AUTH_TIMEOUT):
                head, raw = await read_head(stream)
                if head is not None and not head.is_websocket:
                    self.counters["http_requests"] += 1
                    await stream.send_all(answer(head, self.schema_text))
            if head is not None and head.is_websocket:
                await self._websocket(Replay(stream, raw), remote, head)
        except (trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError, ConnectionClosed):
            pass
        except Exception:  # noqa: BLE001 - one bad client must not stop the server
            log.exception("API connection from %s failed", remote)
        finally:
            self._open_sockets -= 1
            with trio.move_on_after(0.5) as cs:
                cs.shield = True
                await stream.aclose()

    def _origin_allowed(self, origin: str | None, host_header: str | None) -> bool:
        if not origin:
            return True          # not a browser (browsers always send Origin on WebSocket)
        allowed = self.settings.origins
        if "*" in allowed or origin in allowed:
            return True
        return urlsplit(origin).netloc == (host_header or "")   # the dashboard's own origin

    async def _websocket(self, stream: Replay, remote: str, head) -> None:
        async with trio.open_nursery() as nursery:
            request = await wrap_server_stream(nursery, stream, max_message_size=MAX_FRAME)
            if head.path != WS_PATH:
                await request.reject(404, body=f"the WebSocket API is at {WS_PATH}\n".encode())
                nursery.cancel_scope.cancel()
                return
            if not self._origin_allowed(head.headers.get("origin"), head.headers.get("host")):
                log.warning("API: refused WebSocket from origin %r (%s); allow it in api.origins",
                            head.headers.get("origin"), remote)
                await request.reject(403, body=b"origin not allowed\n")
                nursery.cancel_scope.cancel()
                return
            ws, deflate = await accept(request, head.headers.get("sec-websocket-extensions", ""))
            close = [1000, ""]
            try:
                await self._session(ws, remote, close, deflate)
            except ConnectionClosed:
                pass          # the client went away; nothing to answer
            finally:
                with trio.move_on_after(0.5) as cs:
                    cs.shield = True
                    await ws.aclose(close[0], close[1][:120] or None)
                nursery.cancel_scope.cancel()

    async def _authenticate(self, ws, remote: str, close: list) -> TokenInfo | None:
        await ws.send_message(_dumps({"type": "auth_required", "sitegate_version": __version__}))
        msg: Any = None
        with trio.move_on_after(AUTH_TIMEOUT):
            msg = await ws.get_message()
        try:
            data = json.loads(msg) if isinstance(msg, str) else None
        except ValueError:
            data = None
        why = ""
        token: TokenInfo | None = None
        if not isinstance(data, dict) or data.get("type") != "auth" or not isinstance(data.get("access_token"), str):
            why = "expected {\"type\": \"auth\", \"access_token\": \"...\"}" if msg is not None else "no auth in time"
        else:
                token, why = await self._check_token(remote, data["access_token"])
        if token is None:
            await ws.send_message(_dumps({"type": "auth_invalid", "message": why}))
            close[:] = [1008, why]
            return None
        return token

    async def _check_token(self, remote: str, token: str) -> tuple[TokenInfo | None, str]:
        # Checks from one address run concurrently, but never more at once than the failures that
        # address may still make: even if every check in flight fails, the limit holds. Valid
        # logins from one address (a wall of dashboards behind one NAT) do not queue behind each other.
        gate = self._login_gates.setdefault(remote, _LoginGate())
        gate.users += 1
        try:
            while True:
                wait = self.limiter.blocked_for(remote)
                if wait > 0:
                    self.counters["auth_refused"] += 1
                    self.limiter.refused += 1
                    return None, f"too many failed logins from {remote}; try again in {wait:.0f} s"
                if gate.in_flight < self.limiter.remaining(remote):
                    break
                await gate.changed.wait()
            gate.in_flight += 1
            try:
                info = await trio.to_thread.run_sync(self.tokens.check, token)
            finally:
                gate.in_flight -= 1
                gate.changed.set()
                gate.changed = trio.Event()
            if info is None:
                self.limiter.failed(remote)
                self.counters["auth_failed"] += 1
                return None, "invalid or revoked access token"
            return info, ""
        finally:
            gate.users -= 1
            if not gate.users:
                del self._login_gates[remote]

    async def _session(self, ws, remote: str, close: list, deflate: bool) -> None:
        token = await self._authenticate(ws, remote, close)
        if token is None:
            return
        s = self.settings
        conn = Connection(ws, remote, token, soft=s.queue_soft, soft_time=float(s.queue_soft_time), hard=s.queue_hard,
                          deflate=deflate)
        conn.on_hard_cap = lambda c: self._slow(c, f"too slow: hard cap of {c.hard} queued messages reached",
                                                time.monotonic() - (c.soft_since or time.monotonic()))
        self.connections[conn.number] = conn
        self.counters["connections"] += 1
        if deflate:
            self.counters["deflate_connections"] += 1
        try:
            with conn.scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(conn.writer)
                    conn.send(_dumps({"type": "auth_ok", "sitegate_version": __version__, "role": token.role}))
                    await self._read_commands(conn, nursery)
                    conn.kill(1000, "closed by the client")
        finally:
            conn.close_subscriptions()
            conn.closed = True
            self.connections.pop(conn.number, None)
            close[:] = [conn.close_code, conn.close_reason]

    async def _read_commands(self, conn: Connection, nursery: trio.Nursery) -> None:
        limiter = trio.CapacityLimiter(MAX_IN_FLIGHT)
        while True:
            try:
                raw = await conn.ws.get_message()
            except ConnectionClosed:
                return
            try:
                msg = json.loads(raw)
            except ValueError as exc:
                conn.send(_error(None, "invalid_format", f"message is not JSON: {exc}"))
                continue
            if not isinstance(msg, dict):
                conn.send(_error(None, "invalid_format", f"expected a JSON object, got {type(msg).__name__}"))
                continue
            mid = msg.get("id")
            if not isinstance(mid, int) or isinstance(mid, bool):
                conn.send(_error(None, "invalid_format", f"id: expected an integer, got {mid!r}"))
                continue
            if mid <= conn.last_id:
                conn.send(_error(mid, "id_reuse", f"id {mid} is not larger than the previous id {conn.last_id}"))
                continue
            conn.last_id = mid
            try:
                spec, args = parse_command(msg)
            except BadCommand as exc:
                conn.send(_error(mid, exc.code, str(exc)))
                continue
            if spec.name.startswith("subscribe_") and len(conn.subscriptions) >= MAX_SUBSCRIPTIONS:
                conn.send(_error(mid, "not_allowed", f"at most {MAX_SUBSCRIPTIONS} subscriptions per connection; "
                                                     "unsubscribe first"))
                continue
            if role_rank(conn.role) < role_rank(spec.role):
                conn.send(_error(mid, "unauthorized", f"{spec.name} needs the {spec.role} role; "
                                                      f"this token ({conn.token.name}) is {conn.role}"))
                continue
            self.counters["commands"] += 1
            if spec.name == "ping":
                conn.send('{"id":%d,"type":"pong"}' % mid)
                continue
            await limiter.acquire_on_behalf_of(mid)
            nursery.start_soon(self._run, conn, mid, spec.name, args, limiter)

    async def _run(self, conn: Connection, mid: int, name: str, args: Any, limiter: trio.CapacityLimiter) -> None:
        try:
            result = await HANDLERS[name](self, conn, mid, args)
        except ApiError as exc:
            conn.send(_error(mid, exc.code, str(exc)))
        except Exception as exc:  # noqa: BLE001 - report, keep the connection
            log.exception("API command %s (id %d) failed", name, mid)
            conn.send(_error(mid, "failed", f"{name} failed: {type(exc).__name__}: {exc}"))
        else:
            conn.send(_result(mid, result))
        finally:
            limiter.release_on_behalf_of(mid)

    # --- guards ---------------------------------------------------------------------------------
    async def _janitor(self) -> None:
        period = max(0.02, min(0.25, float(self.settings.queue_soft_time) / 10))
        while True:
            await trio.sleep(period)
            now = time.monotonic()
            for conn in list(self.connections.values()):
                if conn.overdue(now):
                    waited = now - (conn.soft_since or now)
                    self._slow(conn, f"too slow: over {conn.soft} messages queued for {waited:.1f} s", waited)

    def _slow(self, conn: Connection, reason: str, waited: float) -> None:
        self.counters["slow_disconnects"] += 1
        self.disconnects = (self.disconnects + [{"at": time.time(), "remote": conn.remote, "reason": reason,
                                                 "token": conn.token.name, "over_soft_for": waited}])[-20:]
        log.warning("API: disconnecting %s (%s): %s", conn.remote, conn.token.name, reason)
        conn.kill(1008, reason)

    async def _watch_revocations(self) -> None:
        while True:
            await trio.sleep(self.revoke_poll)
            ids = {c.token.id for c in self.connections.values()}
            if not ids:
                continue
            revoked = await trio.to_thread.run_sync(self.tokens.revoked_among, ids)
            for conn in list(self.connections.values()):
                if conn.token.id in revoked:
                    self.counters["revoked_disconnects"] += 1
                    log.info("API: token %s revoked; closing its connection from %s", conn.token.name, conn.remote)
                    conn.kill(1008, "token revoked")

    # --- site facts for handlers --------------------------------------------------------------------
    def _on_sink_event(self, event) -> None:
        if event.kind.startswith("sink."):
            sink = (event.data or {}).get("entry") or (event.data or {}).get("sink") or event.source
            info = self._sinks.setdefault(sink, {})
            if event.kind in ("sink.state", "sink.attached", "sink.detached"):
                # Others (sink.dead_letter: a device, seq, error) say nothing of the sink itself.
                info.update({k: v for k, v in (event.data or {}).items() if isinstance(v, (str, int, float, bool))})
            info.setdefault("state", "attached")
            info["last_event"] = event.kind
            info["ts"] = event.ts
            if event.kind == "sink.detached":
                info["state"] = "detached"

    def sink_states(self) -> dict[str, Any]:
        out = {sink: dict(info) for sink, info in self._sinks.items()}
        for sink in self.host.sinks:
            out.setdefault(sink, {"state": "attached"})
        return out

    def dataplane_status(self) -> Any:
        dp = self.host.services.get("dataplane")
        if dp is None:
            return None
        for name in ("status", "describe", "snapshot"):
            fn = getattr(dp, name, None)
            if callable(fn):
                try:
                    return fn()
                except Exception as exc:  # noqa: BLE001
                    return {"error": f"{type(exc).__name__}: {exc}"}
        return {"running": True}

    def describe(self) -> dict[str, Any]:
        return {"url": self.url, "ws_url": self.ws_url, "counters": dict(self.counters),
                "connections": [c.describe() for c in self.connections.values()],
                "reading_groups": len(self.readings.groups), "slow_disconnects": self.disconnects,
                "login_refused": self.limiter.refused}


def _remote(stream: trio.abc.Stream) -> str:
    sock = getattr(stream, "socket", None) or getattr(getattr(stream, "transport_stream", None), "socket", None)
    try:
        return str(sock.getpeername()[0]) if sock is not None else "?"
    except OSError:
        return "?"
