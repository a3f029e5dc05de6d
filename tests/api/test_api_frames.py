"""Pre-built frames: a client that negotiates permessage-deflate (wsproto's own client, not ours)
inflates the shared compressed readings frames and may send compressed commands."""

from __future__ import annotations

import json

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Request, TextMessage
from wsproto.extensions import PerMessageDeflate

from sitegate.api.frames import deflate_frame, text_frame
from sitegate.testing import wait_for
from tests.api.support import api_site


class WsprotoClient:
    def __init__(self, stream: trio.SocketStream):
        self.stream = stream
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.texts: list[str] = []
        self.parts: list[str] = []

    async def open(self, host: str, path: str) -> AcceptConnection:
        await self.stream.send_all(self.ws.send(Request(host=host, target=path, extensions=[PerMessageDeflate()])))
        while True:
            for event in await self._events():
                if isinstance(event, AcceptConnection):
                    return event

    async def _events(self) -> list:
        self.ws.receive_data(await self.stream.receive_some(65536))
        return list(self.ws.events())

    async def send(self, msg: dict) -> None:
        await self.stream.send_all(self.ws.send(TextMessage(json.dumps(msg))))

    async def recv(self) -> dict:
        with trio.fail_after(10):
            while not self.texts:
                for event in await self._events():
                    if isinstance(event, TextMessage):
                        self.parts.append(event.data)
                        if event.message_finished:
                            self.texts.append("".join(self.parts))
                            self.parts = []
        return json.loads(self.texts.pop(0))


async def test_deflate_clients_inflate_shared_readings_frames_and_may_compress_commands(tmp_path):
    async with api_site(tmp_path, interval=0.02) as (host, server, tokens):
        token, _ = tokens.create("viewer")
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        c = WsprotoClient(stream)
        accepted = await c.open(f"127.0.0.1:{server.port}", "/api/websocket")
        assert [type(e) for e in accepted.extensions] == [PerMessageDeflate]
        assert (await c.recv())["type"] == "auth_required"
        await c.send({"type": "auth", "access_token": token})          # compressed by wsproto
        assert (await c.recv())["type"] == "auth_ok"
        await c.send({"id": 1, "type": "subscribe_readings", "devices": ["sim.dev0"], "max_rate": 20})
        assert (await c.recv())["success"]
        for _ in range(3):
            ev = await c.recv()
            assert ev["type"] == "event" and ev["id"] == 1
            assert set(ev["event"]["readings"]["sim.dev0"]) == {"temperature", "counter"}
        await c.send({"id": 2, "type": "ping"})
        while (msg := await c.recv())["type"] == "event":
            pass
        assert msg == {"id": 2, "type": "pong"}
        assert server.counters["deflate_connections"] == 1
        await stream.aclose()


def test_frames_carry_their_length_in_the_right_encoding():
    for n in (5, 125, 126, 65535, 65536, 70000):
        f = text_frame("x" * n)
        assert f[0] == 0x81
        if n < 126:
            assert f[1] == n and len(f) == n + 2
        elif n < 65536:
            assert f[1] == 126 and int.from_bytes(f[2:4], "big") == n and len(f) == n + 4
        else:
            assert f[1] == 127 and int.from_bytes(f[2:10], "big") == n and len(f) == n + 10
    assert deflate_frame("y" * 1000)[0] == 0xC1 and len(deflate_frame("y" * 1000)) < 100


async def test_a_frame_the_kernel_takes_in_part_is_finished_before_anything_else_is_written():
    import socket

    from sitegate.api.connection import Connection
    from sitegate.api.http import Replay
    from sitegate.api.tokens import TokenInfo

    a, b = socket.socketpair()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sa, sb = trio.SocketStream(trio.socket.from_stdlib_socket(a)), trio.SocketStream(trio.socket.from_stdlib_socket(b))

    class FakeWs:                                  # the trio-websocket attributes the fast path uses
        def __init__(self) -> None:
            self._stream_lock = trio.StrictFIFOLock()
            self._stream = Replay(sa, b"")

    ws = FakeWs()
    conn = Connection(ws, "peer", TokenInfo("t", "t", "viewer", 0.0), soft=1000, soft_time=10, hard=2000)
    frames = [text_frame(f"{i:04d}" + "x" * 20_000) for i in range(4)]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(conn.writer)
        conn.send(frames[0])
        assert conn.partial_writes == 1 and ws._stream_lock.locked()   # the socket took only part of it

        async def other_sender() -> None:          # as trio-websocket's own pong would
            async with ws._stream_lock:
                await sa.send_all(b"PONG")
        nursery.start_soon(other_sender)
        for f in frames[1:]:
            conn.send(f)
        received = b""
        expected = len(b"".join(frames)) + 4
        with trio.fail_after(10):
            while len(received) < expected:
                received += await sb.receive_some(65536)
        # PONG lands between whole frames, never inside one; the frames arrive whole and in order.
        at = received.index(b"PONG")
        boundaries = {sum(len(f) for f in frames[:i]) for i in range(1, 5)}
        assert at in boundaries
        assert received[:at] + received[at + 4:] == b"".join(frames)
        await wait_for(lambda: conn.sent == 4, what="the writer to count the last frame")
        nursery.cancel_scope.cancel()
