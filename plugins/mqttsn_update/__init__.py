"""Firmware and config updates for MQTT-SN sensor nodes: the reference update handler.

It speaks the few MQTT-SN messages it needs on its own UDP port (wire.py) rather
than going through the mqttsn entry: integrations cannot import each other, and
a chunked transfer with retransmits and resume wants its own socket and timers.
handler.py is the UpdateHandler, golden.py the desired-vs-reported config.
"""

from __future__ import annotations

import attrs
import nacl.signing

from sitegate.hookspecs import hookimpl

from .handler import MqttsnUpdateHandler


@attrs.frozen
class UpdateEntryConfig:
    """Settings of one mqttsn_update entry."""

    config_version = 1

    trusted_keys: list[str]           # Ed25519 public keys (hex) of publishers whose updates are accepted
    host: str = "127.0.0.1"
    port: int = 1885
    chunk_size: int = 1024            # payload octets per PUBLISH; small links want small chunks
    window: int = 8                   # chunks in flight per device (go-back-N)
    retry: float = 0.5                # seconds before an unanswered request is sent again
    request_timeout: float = 10.0     # seconds without an answer before a device counts as unreachable
    golden: dict | None = None        # desired config: drift is reported as `config.drift` events

    def __attrs_post_init__(self):
        if not self.trusted_keys:
            raise ValueError("trusted_keys: at least one publisher key is needed")
        for i, key in enumerate(self.trusted_keys):
            try:
                nacl.signing.VerifyKey(bytes.fromhex(key))
            except Exception:  # noqa: BLE001 - any decoding problem is a bad key
                raise ValueError(f"trusted_keys[{i}]: expected 64 hex digits of an Ed25519 public key") from None
        if not 16 <= self.chunk_size <= 60000:
            raise ValueError(f"chunk_size: expected 16..60000 octets, got {self.chunk_size}")


def trusted_from_hex(keys: list[str]) -> dict[str, nacl.signing.VerifyKey]:
    from sitegate.updates.artifact import keyid_of
    out = {}
    for key in keys:
        vk = nacl.signing.VerifyKey(bytes.fromhex(key))
        out[keyid_of(vk)] = vk
    return out


@hookimpl
def config_schema() -> type:
    return UpdateEntryConfig


@hookimpl
async def setup_entry(entry) -> None:
    cfg: UpdateEntryConfig = entry.config

    def emit(kind, *, device=None, message="", **data):
        entry.emit(kind, device=device, message=message, **data)

    handler = MqttsnUpdateHandler(trusted_from_hex(cfg.trusted_keys), host=cfg.host, port=cfg.port,
                                  chunk_size=cfg.chunk_size, window=cfg.window, retry=cfg.retry, request_timeout=cfg.request_timeout,
                                  emit=emit, golden=cfg.golden)
    entry.data["handler"] = handler
    await entry.start(handler.serve, name=f"{entry.id}:udp")


@hookimpl
def update_handler(entry):
    return entry.data["handler"]
