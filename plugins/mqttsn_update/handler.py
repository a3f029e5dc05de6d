"""The reference update handler for MQTT-SN sensor nodes: its own UDP socket, its own few messages.

Stage sends the signed envelope, then the payload in chunks (stop-and-wait per
device, many devices at once) from the offset the node reports, so an
interrupted transfer resumes; config updates send only the delta from the
reported config. Every request is retransmitted until the node answers or the
deadline passes (DeviceUnreachable).
"""

from __future__ import annotations

import json
import logging
import math
import socket
import time
from typing import Any, Callable, Mapping

import nacl.signing
import trio

from sitegate.updates import DeviceUnreachable, UpdateArtifact, UpdateFailed, UpdateRefused, verify_update
from sitegate.updates.artifact import canonical

from .golden import config_delta
from .wire import (RC_ACCEPTED, T_CHUNK, T_CMD, T_CONFIG, T_HELLO, T_OFFER, T_REPLY, Connack, Connect, Disconnect,
                   Puback, Publish, WireError, chunk_data, decode, encode)

log = logging.getLogger(__name__)


class MqttsnUpdateHandler:
    """Implements sitegate.plugins.UpdateHandler for nodes that speak the update topics in wire.py."""

    def __init__(self, trusted: Mapping[str, nacl.signing.VerifyKey], *, host: str = "127.0.0.1", port: int = 0,
                 chunk_size: int = 1024, window: int = 8, retry: float = 0.5, request_timeout: float = 10.0,
                 emit: Callable[..., None] | None = None, golden: Mapping[str, Any] | None = None,
                 on_status: Callable[[str, str | None, str | None, str | None], bool] | None = None,
                 twin_id: Callable[[str], str] | None = None):
        self.trusted = dict(trusted)
        self.host, self.port = host, port
        self.chunk_size = chunk_size
        self.window = window                     # chunks in flight per device
        self.retry = retry                       # resend an unanswered request after this long
        self.request_timeout = request_timeout   # give up on a device after this long without an answer
        self.emit = emit or (lambda *a, **k: None)
        self.golden = dict(golden) if golden is not None else None
        # Told (device, hardware id, firmware version, config version) whenever what the device runs
        # committed changes; returns False if it could not pass it on (asked again at the next HELLO).
        self.on_status = on_status
        self._twin_id = twin_id                  # device -> the site device whose twin shows it
        self._told: dict[str, tuple] = {}        # device -> what on_status last took
        self.devices: dict[str, dict] = {}       # device -> last status it reported (HELLO)
        self._addr: dict[str, tuple] = {}
        self._by_addr: dict[tuple, str] = {}
        self._seen: dict[str, trio.Event] = {}
        self._pending: dict[tuple[str, int], list] = {}   # (device, msg id) -> [event, answer]
        self._msg_id: dict[str, int] = {}
        self._acks: dict[str, trio.MemorySendChannel] = {}   # device -> chunk PUBACKs while a transfer runs
        self._staged_kind: dict[str, str] = {}
        self._drift: dict[str, dict] = {}        # device -> last config drift reported
        self._expected: dict[str, str] = {}      # device -> sha256 of what it should run after activation
        self._sock: trio.socket.SocketType | None = None
        self.counters = {"datagrams_out": 0, "datagrams_in": 0, "retransmits": 0, "bytes_staged": 0}

    # --- the socket -----------------------------------------------------------------
    async def serve(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        # A plain non-blocking socket drained in a loop after each wake-up: per datagram this
        # costs a fraction of trio's socket wrapper, which matters at 100k+ chunks a rollout.
        sock = self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        task_status.started(self.port)
        try:
            while True:
                await trio.lowlevel.wait_readable(sock)
                for _ in range(256):   # then let other tasks run
                    try:
                        data, addr = sock.recvfrom(70000)
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:
                        continue   # ICMP port unreachable from a node that went away
                    self.counters["datagrams_in"] += 1
                    try:
                        msg = decode(data)
                    except WireError:
                        continue   # garbage from the field is not ours to crash on
                    self._on_message(msg, addr)
                await trio.lowlevel.checkpoint()
        finally:
            sock.close()

    def _send(self, addr: tuple, msg) -> None:
        self.counters["datagrams_out"] += 1
        try:
            self._sock.sendto(encode(msg), addr)
        except OSError:
            pass  # buffer full or node unreachable: shows up as a missing answer and is retransmitted

    def _on_message(self, msg, addr: tuple) -> None:
        if isinstance(msg, Connect):
            self._learn(msg.client_id, addr)
            self._send(addr, Connack())
            return
        device = self._by_addr.get(addr)
        if device is None:
            # Not connected here (this gateway restarted): MQTT-SN's answer is DISCONNECT, and the node reconnects.
            self._send(addr, Disconnect())
            return
        if isinstance(msg, Publish):
            if msg.topic == T_HELLO:
                self._on_hello(device, msg.data)
            elif msg.topic == T_REPLY:
                self._answer(device, msg.msg_id, msg.data)
        elif isinstance(msg, Puback):
            acks = self._acks.get(device)
            if acks is not None and msg.topic == T_CHUNK:
                acks.send_nowait((msg.msg_id, msg.rc))
            else:
                self._answer(device, msg.msg_id, msg.rc)
        elif isinstance(msg, Disconnect):
            self.devices.get(device, {})["online"] = False

    def _learn(self, device: str, addr: tuple) -> None:
        old = self._addr.get(device)
        if old is not None and old != addr:
            self._by_addr.pop(old, None)
        self._addr[device], self._by_addr[addr] = addr, device

    def _on_hello(self, device: str, data: bytes) -> None:
        try:
            status = json.loads(data)
        except ValueError:
            return
        first = device not in self.devices
        status["online"], status["last_seen"] = True, time.time()
        self.devices[device] = status
        self._seen.setdefault(device, trio.Event()).set()
        self._tell(device)
        if self.golden is not None:
            delta = config_delta(status.get("config") or {}, self.golden)
            # Once per change of the drift, not at every keep-alive.
            if delta and self._drift.get(device) != delta:
                self.emit("config.drift", device=device, message=f"{device}: config differs from golden in "
                          f"{', '.join(sorted(delta))}", delta=delta)
            self._drift[device] = delta
        if first:
            self.emit("update.device_seen", device=device, hardware_id=status.get("hw"), version=status.get("version"))

    def _tell(self, device: str) -> None:
        """Pass what the device runs committed to `on_status` when it changed: hardware id, firmware
        and config version. A bank on trial is not news until it is committed (if it reverts, the
        version it falls back to is what was told before)."""
        if self.on_status is None:
            return
        status = self.devices[device]
        told = self._told.get(device, (None, None, None))

        def text(value: Any) -> str | None:
            return None if value is None else str(value)
        now = (text(status.get("hw")) or told[0],
               (None if status.get("trial") else text(status.get("version"))) or told[1],
               (None if status.get("config_trial") else text(status.get("config_version"))) or told[2])
        if now == told:
            return
        try:
            taken = self.on_status(device, *now)
        except Exception:  # noqa: BLE001 - a broken listener must not stop the socket loop
            log.exception("%s: on_status failed", device)
            return
        if taken is not False:
            self._told[device] = now

    def _ran(self, device: str, kind: str, answer: Mapping[str, Any]) -> None:
        """A commit or rollback answer says which version the device runs now: no need to wait for its HELLO."""
        status = self.devices.get(device)
        if status is None or answer.get("version") is None:
            return
        if kind == "firmware":
            status.update(version=answer["version"], trial=False)
        else:
            status.update(config_version=answer["version"], config_trial=False)
        self._tell(device)

    def _answer(self, device: str, msg_id: int, answer: Any) -> None:
        slot = self._pending.get((device, msg_id))
        if slot is not None and not slot[0].is_set():
            slot[1] = answer
            slot[0].set()

    # --- requests -------------------------------------------------------------------
    async def wait_for_device(self, device: str, timeout: float) -> dict:
        if device in self.devices:
            return self.devices[device]
        with trio.move_on_after(timeout):
            await self._seen.setdefault(device, trio.Event()).wait()
            return self.devices[device]
        raise DeviceUnreachable(f"{device}: not heard from within {timeout:g} s (never connected or offline)")

    async def _request(self, device: str, topic: int, data: bytes, timeout: float | None = None) -> Any:
        await self.wait_for_device(device, timeout or self.request_timeout)
        msg_id = self._next_id(device)
        slot = self._pending[(device, msg_id)] = [trio.Event(), None]
        deadline = trio.current_time() + (timeout or self.request_timeout)
        msg = Publish(topic, msg_id, data)
        try:
            first = True
            while True:
                if not first:
                    self.counters["retransmits"] += 1
                first = False
                self._send(self._addr[device], msg)   # the address may change when a node reboots
                with trio.move_on_at(min(deadline, trio.current_time() + self.retry)):
                    await slot[0].wait()
                    return slot[1]
                if trio.current_time() >= deadline:
                    raise DeviceUnreachable(f"{device}: no answer to topic 0x{topic:04x} within "
                                            f"{timeout or self.request_timeout:g} s")
        finally:
            del self._pending[(device, msg_id)]

    def _next_id(self, device: str) -> int:
        msg_id = self._msg_id[device] = self._msg_id.get(device, 0) % 0xFFFF + 1
        return msg_id

    async def _json_request(self, device: str, topic: int, body: Any, timeout: float | None = None) -> dict:
        raw = await self._request(device, topic, canonical(body), timeout)
        try:
            answer = json.loads(raw)
        except (TypeError, ValueError):
            raise UpdateFailed(f"{device}: answered {raw!r}, expected JSON") from None
        if answer.get("status") == "refused":
            raise UpdateRefused(answer.get("check", "?"), f"{device} refused: {answer.get('detail', '')}")
        if answer.get("status") == "error":
            raise UpdateFailed(f"{device}: {answer.get('detail', 'error')}")
        return answer

    # --- the UpdateHandler contract ---------------------------------------------------
    def twin_id(self, device: str) -> str | None:
        """The site device whose twin shows `device` (None: the engine's default, `<entry id>.<device>`)."""
        return self._twin_id(device) if self._twin_id is not None else None

    def inventory(self) -> dict[str, dict]:
        """Devices heard from, with what they reported: hw (hardware id), version, counter, config, ..."""
        return {d: {"hardware_id": s.get("hw"), **s} for d, s in self.devices.items()}

    async def stage(self, device: str, artifact: UpdateArtifact,
                    progress: Callable[[int, int], None] | None = None) -> str | None:
        """Verify, offer, then send what the node lacks. "installed"/"trial" if it already has it."""
        status = await self.wait_for_device(device, self.request_timeout)
        m = artifact.manifest
        running = status.get("sha256" if m.kind == "firmware" else "config_sha256")
        prefix = "" if m.kind == "firmware" else "config_"
        # The gateway's own checks come first: a refused artifact never costs the radio link a byte.
        verify_update(artifact, self.trusted, hardware_id=status.get("hw"),
                      current_counter=None if running == m.hashes["sha256"] else status.get(f"{prefix}counter"),
                      current_version=status.get(f"{prefix}version" if prefix else "version"))
        self._staged_kind[device] = m.kind
        self._expected[device] = m.hashes["sha256"]
        answer = await self._json_request(device, T_OFFER, dict(artifact.envelope))
        if answer["status"] in ("installed", "trial"):
            return answer["status"]
        offset = int(answer.get("offset", 0))
        if m.kind == "config":
            desired = json.loads(artifact.payload)
            await self._json_request(device, T_CONFIG, {"delta": config_delta(status.get("config") or {}, desired)})
            return None
        return await self._send_chunks(device, artifact, offset, progress)

    async def _send_chunks(self, device: str, artifact: UpdateArtifact, offset: int,
                           progress: Callable[[int, int], None] | None) -> str | None:
        """Go-back-N: up to `window` chunks in flight; on a gap or silence ask the node where it is."""
        payload, size, total = artifact.payload, self.chunk_size, len(artifact.payload)
        send, receive = trio.open_memory_channel(math.inf)
        self._acks[device] = send
        inflight: dict[int, int] = {}      # msg id -> offset after that chunk
        acked = next_offset = offset
        stalls = 0                         # resumes in a row without progress
        srtt, sent_at = self.retry / 4, trio.current_time()   # smoothed ack time: a busy link is not a lost one
        try:
            while acked < total:
                while len(inflight) < self.window and next_offset < total:
                    data = payload[next_offset:next_offset + size]
                    msg_id = self._next_id(device)
                    inflight[msg_id] = next_offset + len(data)
                    self._send(self._addr[device], Publish(T_CHUNK, msg_id, chunk_data(next_offset, data)))
                    next_offset += len(data)
                ack = None
                with trio.move_on_after(max(self.retry, 8 * srtt)):
                    ack = await receive.receive()
                if ack is not None and ack[0] not in inflight:
                    continue   # an answer to a chunk already given up on
                if ack is not None and ack[1] == RC_ACCEPTED:
                    end = inflight.pop(ack[0])
                    now = trio.current_time()
                    srtt, sent_at = 0.9 * srtt + 0.1 * (now - sent_at), now
                    if end > acked:
                        self.counters["bytes_staged"] += end - acked
                        acked, stalls = end, 0
                        if progress is not None:
                            progress(acked, total)
                    continue
                # Silence or a refused chunk: the node rebooted, lost a datagram, or lost power.
                stalls += 1
                self.counters["retransmits"] += len(inflight)
                if stalls > 20:
                    raise UpdateFailed(f"{device}: transfer makes no progress at offset {acked} of {total}")
                inflight.clear()
                answer = await self._json_request(device, T_OFFER, dict(artifact.envelope))
                if answer["status"] in ("installed", "trial"):
                    return answer["status"]
                acked = next_offset = int(answer.get("offset", 0))
            return None
        finally:
            if self._acks.get(device) is send:
                del self._acks[device]

    async def activate(self, device: str) -> None:
        kind = self._staged_kind.get(device, "firmware")
        answer = await self._json_request(device, T_CMD, {"op": "activate", "kind": kind})
        if answer.get("status") != "activated":
            raise UpdateFailed(f"{device}: activate answered {answer}")

    async def health_check(self, device: str, deadline: float) -> bool:
        """True if the node runs the update it was given and its self-test passes; asked until `deadline` (time.time)."""
        kind = self._staged_kind.get(device, "firmware")
        timeout = max(0.1, deadline - time.time())
        ask = {"op": "health", "kind": kind}
        if device in self._expected:
            ask["sha256"] = self._expected[device]
        answer = await self._json_request(device, T_CMD, ask, timeout)
        return bool(answer.get("healthy"))

    async def commit(self, device: str) -> None:
        kind = self._staged_kind.get(device, "firmware")
        self._ran(device, kind, await self._json_request(device, T_CMD, {"op": "commit", "kind": kind}))

    async def rollback(self, device: str) -> None:
        kind = self._staged_kind.get(device, "firmware")
        self._ran(device, kind, await self._json_request(device, T_CMD, {"op": "rollback", "kind": kind}))

    async def report(self, device: str) -> dict:
        return await self._json_request(device, T_CMD, {"op": "report"})
