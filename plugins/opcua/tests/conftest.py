"""An asyncua server in another process, started per test on a free port, restartable."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

SERVER = Path(__file__).with_name("server.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OpcuaServer:
    def __init__(self, port: int, *args: str):
        self.port = port
        self.args = list(args)
        self.proc: subprocess.Popen | None = None
        self.endpoint = f"opc.tcp://127.0.0.1:{port}/sitegate/test"

    def start(self, timeout: float = 30) -> "OpcuaServer":
        self.proc = subprocess.Popen([sys.executable, str(SERVER), str(self.port), *self.args],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if line.startswith("READY"):
                return self
            if not line and self.proc.poll() is not None:
                break
        raise RuntimeError(f"OPC UA test server did not start (exit {self.proc.poll()})")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None


@pytest.fixture
def opcua_server():
    servers: list[OpcuaServer] = []

    def start(*args: str) -> OpcuaServer:
        server = OpcuaServer(free_port(), *args).start()
        servers.append(server)
        return server

    yield start
    for s in servers:
        s.stop()
