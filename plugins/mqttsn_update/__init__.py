"""Firmware and config updates for MQTT-SN sensor nodes: the reference update handler.

It speaks the few MQTT-SN messages it needs on its own UDP port (wire.py) rather
than going through the mqttsn entry: integrations cannot import each other, and
a chunked transfer with retransmits and resume wants its own socket and timers.
handler.py is the UpdateHandler, golden.py the desired-vs-reported config.

Twins: every node the handler hears from is declared as the site device
``entry.device_name(node id)`` (``<entry id>.<node id>``, as adapters name theirs),
with its hardware id as hw_version and the firmware version it runs committed as
fw_version; the config version it runs goes to the twin's reported config. With
``devices_of: <mqttsn entry>`` the nodes are that adapter entry's devices
(``<that entry>.<node id>``): hardware id, firmware and config version go to their
twins through ``Twins.report``, which leaves the adapter's points and ownership alone.
"""

from __future__ import annotations

import attrs
import nacl.signing
import trio

from sitegate.hookspecs import hookimpl
from sitegate.model import DeviceInfo

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
    # The mqttsn adapter entry the nodes send their readings through: their twins are that entry's
    # devices (`<devices_of>.<node id>`), one per node, instead of `<this entry>.<node id>`.
    devices_of: str | None = attrs.field(default=None, metadata={"names_entry": ("mqttsn",)})

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
    cfg: UpdateEntryConfig = entry.config   # devices_of names an mqttsn entry: the core checked it

    def emit(kind, *, device=None, message="", **data):
        entry.emit(kind, device=device, message=message, **data)

    def twin_id(node: str) -> str:
        # The adapter names its devices `<its entry id>.<client id>` (EntryContext.device_name).
        return f"{cfg.devices_of}.{node}" if cfg.devices_of else entry.device_name(node)

    waiting: dict[str, dict] = {}   # twin -> what to report once the registry runs

    def on_status(node: str, hardware_id: str | None, fw_version: str | None, config_version: str | None) -> bool:
        device = twin_id(node)
        if cfg.devices_of:
            # Another entry's device: its points and owner stay; only what the node runs is reported.
            report = {"hw_version": hardware_id, "fw_version": fw_version, "config_version": config_version}
        else:
            # Declared like an adapter's device: twins take hw/fw from it (a change raises `device.declared`).
            entry.declare_device(DeviceInfo(device, entry.id, name=node, model="MQTT-SN node",
                                            hw_version=hardware_id or "", fw_version=fw_version or ""))
            report = {"config_version": config_version}
        twins = entry.host.services.get("twins")
        if twins is None:
            waiting[device] = report   # the registry starts after the entries: report_waiting passes it on
        else:
            twins.report(device, **report)
        return True

    async def report_waiting() -> None:
        while (twins := entry.host.services.get("twins")) is None:
            await trio.sleep(0.1)
        while waiting:
            device, report = waiting.popitem()
            twins.report(device, **report)

    handler = MqttsnUpdateHandler(trusted_from_hex(cfg.trusted_keys), host=cfg.host, port=cfg.port,
                                  chunk_size=cfg.chunk_size, window=cfg.window, retry=cfg.retry, request_timeout=cfg.request_timeout,
                                  emit=emit, golden=cfg.golden, on_status=on_status, twin_id=twin_id)
    entry.data["handler"] = handler
    entry.start_task(report_waiting, name=f"{entry.id}:report-waiting")
    await entry.start(handler.serve, name=f"{entry.id}:udp")


@hookimpl
def update_handler(entry):
    return entry.data["handler"]
