"""The Mosquitto test helper itself: a port taken before the first start, stop/start keeping ports."""

from __future__ import annotations

import socket

import pytest

from sitegate.testing import mosquitto as m

pytestmark = pytest.mark.mosquitto


def test_taken_port_at_first_start_moves_and_restarts_keep_the_port(tmp_path, monkeypatch):
    m.ensure_mosquitto()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        real = m.free_port
        first = [taken]
        monkeypatch.setattr(m, "free_port", lambda: first.pop() if first else real())
        broker = m.Mosquitto(tmp_path)
        assert broker.port == taken
        try:
            broker.start()
            assert broker.port != taken and broker.running
            port = broker.port
            broker.stop()
            assert not broker.running
            broker.start()
            assert broker.port == port and broker.running
        finally:
            broker.kill()
