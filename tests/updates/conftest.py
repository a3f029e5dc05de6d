"""Shared pieces for update tests: a publisher key, artifacts, a handler and a fleet on loopback."""

from __future__ import annotations

import nacl.signing
import pytest
import trio

from examples.devices.fleet import Fleet
from plugins.mqttsn_update import trusted_from_hex
from plugins.mqttsn_update.handler import MqttsnUpdateHandler
from sitegate.updates import sign_update

HARDWARE = ["th-v1", "th-v2", "th-v3"]


@pytest.fixture(scope="session")
def publisher_key() -> nacl.signing.SigningKey:
    return nacl.signing.SigningKey(b"\x07" * 32)


@pytest.fixture
def make_artifact(publisher_key):
    def make(version="1.1.0", counter=2, size=8192, hardware=HARDWARE, key=None, **kw):
        payload = (f"firmware {version} ".encode() * (size // 10 + 1))[:size]
        return sign_update(payload, key or publisher_key, name="th-node-fw", version=version,
                           release_counter=counter, hardware_ids=hardware, **kw)
    return make


@pytest.fixture
def lab(publisher_key):
    """`async with lab(count) as (handler, fleet)`: a handler and a fleet talking on loopback."""
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def start(count=200, *, fleet_kw=None, **handler_kw):
        hexkey = publisher_key.verify_key.encode().hex()
        handler_kw.setdefault("retry", 0.3)
        handler_kw.setdefault("request_timeout", 3.0)
        handler = MqttsnUpdateHandler(trusted_from_hex([hexkey]), **handler_kw)
        async with trio.open_nursery() as nursery:
            port = await nursery.start(handler.serve)
            fleet = Fleet(count, ("127.0.0.1", port), [hexkey], hardware=HARDWARE, **(fleet_kw or {}))
            await nursery.start(fleet.run)
            with trio.fail_after(20):
                while len(handler.devices) < count:
                    await trio.sleep(0.01)
            yield handler, fleet
            nursery.cancel_scope.cancel()
    return start
