"""WebSocket frames built once for every subscriber, optionally compressed (permessage-deflate).

Bytes on the wire are most of what fan-out costs (each client's copy goes through
the kernel), so a readings message is serialised, compressed and framed once and
written as is to each client. trio-websocket does not negotiate permessage-deflate
itself; `accept` does it through wsproto, which then also inflates what clients send.
"""

from __future__ import annotations

import zlib

from trio_websocket import WebSocketConnection, WebSocketRequest

try:  # the pieces of trio-websocket and wsproto this relies on; without them: plain frames
    from wsproto.events import AcceptConnection
    from wsproto.extensions import PerMessageDeflate
except ImportError:  # pragma: no cover
    PerMessageDeflate = None  # type: ignore[assignment,misc]


def text_frame(text: str) -> bytes:
    """A whole unmasked server-to-client text frame (RFC 6455 5.2) carrying `text`."""
    return _frame(0x81, text.encode())


def deflate_frame(text: str) -> bytes:
    """The same, compressed on its own (RFC 7692 with server_no_context_takeover), so one frame
    suits every client that negotiated it, whatever it received before."""
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    data = c.compress(text.encode()) + c.flush(zlib.Z_SYNC_FLUSH)
    return _frame(0xC1, data[:-4])    # RSV1 marks it compressed; the 00 00 ff ff tail is implied


def _frame(first: int, data: bytes) -> bytes:
    n = len(data)
    if n < 126:
        head = bytes((first, n))
    elif n < 65536:
        head = bytes((first, 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((first, 127)) + n.to_bytes(8, "big")
    return head + data


def frame_mode(ws: WebSocketConnection, deflate: bool) -> str:
    """How pre-built frames reach this client: `deflate`, `raw` or `text` (through send_message)."""
    if not (hasattr(ws, "_stream_lock") and hasattr(ws, "_stream")):
        return "text"
    return "deflate" if deflate else "raw"


async def accept(request: WebSocketRequest, offered: str) -> tuple[WebSocketConnection, bool]:
    """Accept the handshake, with permessage-deflate when the client offered it (browsers do).
    Returns the connection and whether compression is on."""
    conn = getattr(request, "_connection", None)
    if "permessage-deflate" not in offered or PerMessageDeflate is None or conn is None \
            or not all(hasattr(conn, a) for a in ("_send", "_open_handshake", "_path", "_subprotocol")):
        return await request.accept(), False
    ext = PerMessageDeflate(server_no_context_takeover=True)
    # What trio-websocket's request.accept() does, plus the extension.
    conn._subprotocol = None
    conn._path = request.path
    await conn._send(AcceptConnection(extensions=[ext]))
    conn._open_handshake.set()
    # A client asking for a smaller window than ours could not inflate the shared frames.
    on = bool(getattr(ext, "_enabled", False)) and ext.server_max_window_bits == 15
    return conn, on
