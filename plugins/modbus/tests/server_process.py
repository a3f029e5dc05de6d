"""Starting modbus_server.py (a pymodbus server in its own process) from tests and benchmarks."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import trio

SERVER = Path(__file__).parent / "modbus_server.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """One running modbus_server.py; `command` drives its fault injection, `stats` counts requests."""

    def __init__(self, *, port: int | None = None, rtu_tcp: bool = False, serial: bool = False,
                 units: str = "1", plain: int = 0):
        self.port = port or free_port()
        self.rtu_tcp_port = free_port() if rtu_tcp else 0
        self.serial: str | None = None
        args = [sys.executable, str(SERVER), "--port", str(self.port), "--units", units]
        if rtu_tcp:
            args += ["--rtu-tcp-port", str(self.rtu_tcp_port)]
        if serial:
            args.append("--serial")
        if plain:
            args += ["--plain", str(plain)]
        self.args = args
        self.proc: subprocess.Popen | None = None

    async def start(self, timeout: float = 15.0) -> "ServerProcess":
        self.proc = subprocess.Popen(self.args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        line = await self._readline(timeout)
        if not line.startswith("READY"):
            raise RuntimeError(f"modbus_server.py did not start: {line!r}")
        for word in line.split()[1:]:
            if word.startswith("serial="):
                self.serial = word[len("serial="):]
        return self

    def start_sync(self, timeout: float = 15.0) -> "ServerProcess":
        """For benchmarks outside trio: start and wait for READY (the server prints it within seconds)."""
        self.proc = subprocess.Popen(self.args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        line = self.proc.stdout.readline()
        if not line.startswith("READY"):
            self.stop()
            raise RuntimeError(f"modbus_server.py did not start: {line!r}")
        return self

    async def _readline(self, timeout: float) -> str:
        with trio.fail_after(timeout):
            return await trio.to_thread.run_sync(self.proc.stdout.readline, abandon_on_cancel=True)

    async def command(self, line: str) -> str:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return (await self._readline(10.0)).strip()

    async def stats(self) -> dict[str, int]:
        reply = await self.command("stats")
        assert reply.startswith("STATS "), reply
        return json.loads(reply[6:])

    def stop(self) -> None:
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        try:
            proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()
