"""Helpers for the MQTT-SN tests: a gateway on a free loopback port, the third-party
`mqtt-sn-12` client driven from a worker thread, and a raw codec client for what that
client cannot do. The fixtures are exposed by conftest.py; this module has a unique name
so test modules can import from it while other folders have their own conftest.py."""

from __future__ import annotations

import contextlib
import socket
from typing import Any, Callable

import pytest
import trio
from mqttsn12.client.MqttSnClient import MqttSnClient, MqttSnListener

from plugins.mqttsn import codec as c
from plugins.mqttsn.config import GatewayConfig
from plugins.mqttsn.gateway import Gateway

DEADLINE = 10.0


async def until(condition: Callable[[], Any], timeout: float = DEADLINE, what: str = "condition") -> Any:
    """Wait until `condition()` is truthy, failing after `timeout` seconds."""
    with trio.move_on_after(timeout):
        while True:
            value = condition()
            if value:
                return value
            await trio.sleep(0.005)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


class Recorder:
    """A `deliver` callable that records batches; `accept` decides the answer."""

    def __init__(self):
        self.batches = []
        self.accept = True
        self.calls = 0

    async def __call__(self, batches):
        self.calls += 1
        await trio.lowlevel.checkpoint()
        if self.accept:
            self.batches.extend(batches)
        return self.accept

    def rows(self):
        return [(b.device, p, v) for b in self.batches for p, v, _, _ in b.rows()]


class Harness:
    def __init__(self, nursery: trio.Nursery):
        self.nursery = nursery

    async def gateway(self, deliver=None, **cfg) -> tuple[Gateway, Recorder | Any]:
        cfg.setdefault("host", "127.0.0.1")
        cfg.setdefault("port", 0)
        cfg.setdefault("tick", 0.02)
        deliver = deliver or Recorder()
        gw = Gateway(GatewayConfig(**cfg), deliver)
        await self.nursery.start(gw.serve)
        return gw, deliver


@pytest.fixture
async def harness(nursery):
    return Harness(nursery)


class Listener(MqttSnListener):
    def __init__(self):
        self.messages = []

    def message_arrived(self, msg):
        self.messages.append(msg)


class ThirdParty:
    """The `mqtt-sn-12` client (blocking sockets) run in a worker thread with a deadline."""

    def __init__(self, port: int, client_id: str | None, keep_alive: int = 60, timeout: int = 3):
        self.client = MqttSnClient()
        self.client.set_timeout(timeout)
        if client_id is not None:
            self.client.set_client_id(client_id)
        self.client.set_keep_alive(keep_alive)
        self.client.open("127.0.0.1", port)
        self.port = port

    async def call(self, fn: Callable[..., Any], *args: Any, timeout: float = DEADLINE) -> Any:
        with trio.fail_after(timeout):
            return await trio.to_thread.run_sync(fn, *args, abandon_on_cancel=True)

    async def do(self, name: str, *args: Any, timeout: float = DEADLINE) -> Any:
        return await self.call(getattr(self.client, name), *args, timeout=timeout)

    async def poll_until(self, listener: Listener, n: int, timeout: float = DEADLINE) -> list:
        with trio.fail_after(timeout):
            while len(listener.messages) < n:
                await trio.to_thread.run_sync(self.client.polling, abandon_on_cancel=True)
                if len(listener.messages) < n:
                    await trio.sleep(0.005)
        return listener.messages

    def close(self):
        self.client.close()


@pytest.fixture
def third_party():
    made: list[ThirdParty] = []

    def make(port: int, client_id: str | None = "node1", **kw) -> ThirdParty:
        tp = ThirdParty(port, client_id, **kw)
        made.append(tp)
        return tp

    yield make
    for tp in made:
        with contextlib.suppress(Exception):
            tp.close()


class RawClient:
    """Sends and receives codec messages on its own UDP socket (for what mqtt-sn-12 lacks)."""

    def __init__(self, port: int, node_id: bytes | None = None):
        self.port = port
        self.node_id = node_id
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setblocking(False)

    async def open(self) -> "RawClient":
        self.sock.bind(("127.0.0.1", 0))
        await trio.lowlevel.checkpoint()
        return self

    async def send(self, msg: c.Message) -> None:
        if self.node_id is not None:
            msg = c.Encapsulated(0, self.node_id, msg)
        await self.send_bytes(c.encode(msg))

    async def send_bytes(self, data: bytes) -> None:
        self.sock.sendto(data, ("127.0.0.1", self.port))
        await trio.lowlevel.checkpoint()

    async def recv(self, timeout: float = DEADLINE) -> c.Message:
        with trio.fail_after(timeout):
            while True:
                try:
                    data = self.sock.recv(70000)
                    break
                except BlockingIOError:
                    await trio.lowlevel.wait_readable(self.sock)
        msg = c.decode(data)
        if self.node_id is not None:
            assert isinstance(msg, c.Encapsulated) and msg.node_id == self.node_id
            msg = msg.message
        return msg

    async def expect(self, kind: type, timeout: float = DEADLINE) -> Any:
        msg = await self.recv(timeout)
        assert isinstance(msg, kind), f"expected {kind.__name__}, got {msg!r}"
        return msg

    def nothing_waiting(self) -> bool:
        try:
            self.sock.recv(70000)
        except BlockingIOError:
            return True
        return False

    async def connect(self, client_id: str, *, duration: int = 60, clean: bool = True) -> None:
        await self.send(c.Connect(client_id, duration, clean_session=clean))
        ack = await self.expect(c.Connack)
        assert ack.return_code == c.ReturnCode.ACCEPTED

    def close(self):
        self.sock.close()


@pytest.fixture
async def raw_client():
    made: list[RawClient] = []

    async def make(port: int, node_id: bytes | None = None) -> RawClient:
        rc = await RawClient(port, node_id).open()
        made.append(rc)
        return rc

    yield make
    for rc in made:
        rc.close()
