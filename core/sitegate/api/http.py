"""Plain HTTP beside the WebSocket on one port: the dashboard's static files and the API schema.

The server reads a request head first; WebSocket upgrades go to trio-websocket
through `Replay` (which hands it the bytes already read), everything else is
answered here: GET only, files from the dashboard folder, nothing else.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path

import trio

DASHBOARD = Path(__file__).resolve().parent.parent / "dashboard"
MAX_HEAD = 16 * 1024

# The dashboard talks only to its own origin; nothing else may be framed, scripted or fetched.
_SECURITY = [
    ("Content-Security-Policy", "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; "
                                "style-src 'self'; script-src 'self'; frame-ancestors 'none'"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-store"),
]


class Head:
    def __init__(self, method: str, target: str, headers: dict[str, str]):
        self.method, self.target, self.headers = method, target, headers

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0].split("#", 1)[0]

    @property
    def is_websocket(self) -> bool:
        return self.headers.get("upgrade", "").lower() == "websocket"


async def read_head(stream: trio.abc.Stream) -> tuple[Head | None, bytes]:
    """The request head (None if the bytes are not HTTP) and every byte read so far."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = await stream.receive_some(4096)
        if not data:
            return None, buf
        buf += data
        if len(buf) > MAX_HEAD and b"\r\n\r\n" not in buf[:MAX_HEAD]:
            return None, buf
    lines = buf.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        return None, buf
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return Head(parts[0], parts[1], headers), buf


class Replay(trio.abc.Stream):
    """A stream that first returns bytes already read from it (the sniffed request head)."""

    def __init__(self, stream: trio.abc.Stream, buffered: bytes):
        self.stream = stream
        self._buf = buffered

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._buf:
            n = len(self._buf) if max_bytes is None else max_bytes
            out, self._buf = self._buf[:n], self._buf[n:]
            await trio.lowlevel.checkpoint()
            return out
        return await self.stream.receive_some(max_bytes)

    async def send_all(self, data) -> None:
        await self.stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self.stream.aclose()


def _response(status: str, body: bytes, content_type: str, extra: list[tuple[str, str]] = ()) -> bytes:
    headers = [("Content-Type", content_type), ("Content-Length", str(len(body))), ("Connection", "close"),
               *_SECURITY, *extra]
    head = f"HTTP/1.1 {status}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
    return head.encode("latin-1") + body


def answer(head: Head, schema_text: str) -> bytes:
    """The whole HTTP response for a non-WebSocket request."""
    if head.method not in ("GET", "HEAD"):
        return _response("405 Method Not Allowed", b"only GET\n", "text/plain", [("Allow", "GET, HEAD")])
    path = head.path
    if path == "/api/schema.json":
        body = schema_text.encode()
        ctype = "application/schema+json"
    else:
        name = "index.html" if path in ("/", "/index.html") else path.lstrip("/")
        file = (DASHBOARD / name).resolve()
        # Only plain files directly inside the dashboard folder: no traversal, no dotfiles.
        if file.parent != DASHBOARD or name.startswith(".") or "/" in name or not file.is_file():
            return _response("404 Not Found", b"not found: the dashboard is at /, the API at /api/websocket\n",
                             "text/plain; charset=utf-8")
        body = file.read_bytes()
        ctype = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        if ctype.startswith("text/") or ctype.endswith("javascript"):
            ctype += "; charset=utf-8"
    out = _response("200 OK", body, ctype)
    return out[: out.index(b"\r\n\r\n") + 4] if head.method == "HEAD" else out
