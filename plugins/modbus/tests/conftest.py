"""Fixtures for the Modbus tests: a pymodbus server in another process (modbus_server.py)."""

from __future__ import annotations

import pytest

from plugins.modbus.tests.server_process import ServerProcess, free_port  # noqa: F401


@pytest.fixture
async def modbus_server():
    """Start servers with ``await modbus_server(rtu_tcp=..., serial=..., port=...)``; all stop at teardown."""
    started: list[ServerProcess] = []

    async def start(**kw) -> ServerProcess:
        s = ServerProcess(**kw)
        started.append(s)
        return await s.start()

    yield start
    for s in started:
        s.stop()
