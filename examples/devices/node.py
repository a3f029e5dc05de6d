"""One simulated MQTT-SN sensor node with A/B banks and its own update agent.

The node checks every update itself (PyNaCl signature, expiry, hardware id,
release counter, minimum version, length and sha256) with no sitegate code, as
firmware would. Faults for tests: fail the health self-test, lose power after a
fraction of a transfer, go offline. Staged bytes live in "flash" and survive
power loss, so a transfer resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import socket
import time
from typing import Any

import nacl.exceptions
import nacl.signing
import trio

from .wire import (RC_ACCEPTED, RC_NOT_SUPPORTED, T_CHUNK, T_CMD, T_CONFIG, T_HELLO, T_OFFER, T_REPLY, Connack,
                   Connect, Disconnect, Publish, Puback, WireError, decode, encode, split_chunk)


def canonical(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in str(text).split("."))


class Slot:
    """What one kind of update (firmware or config) looks like on the node: A/B banks plus staging flash."""

    def __init__(self, version: str, counter: int, data: bytes):
        self.active = {"version": version, "counter": counter, "sha256": hashlib.sha256(data).hexdigest()}
        self.data = data                 # what runs (firmware image, or canonical config JSON)
        self.previous: dict | None = None
        self.previous_data = b""
        self.trial = False               # booted into the new bank, not committed yet
        self.staged: dict | None = None  # manifest being received
        self.flash = bytearray()         # the inactive bank's bytes so far

    def revert(self) -> bool:
        if self.previous is None:
            return False
        self.active, self.data, self.previous, self.previous_data = self.previous, self.previous_data, None, b""
        self.trial = False
        return True


class Node:
    def __init__(self, device_id: str, hardware_id: str, trusted: dict[str, nacl.signing.VerifyKey], gateway: tuple,
                 *, version: str = "1.0.0", counter: int = 1, config: dict | None = None,
                 reboot_time: float = 0.01, trial_window: float = 30.0, keepalive: float = 5.0):
        self.id = device_id
        self.hw = hardware_id
        self.trusted = trusted
        self.gateway = gateway
        self.slots = {"firmware": Slot(version, counter, b"factory image " + device_id.encode()),
                      "config": Slot("0", 0, canonical(config or {}))}
        self.reboot_time = reboot_time
        self.trial_window = trial_window
        self.keepalive = keepalive   # HELLO this often, so a restarted gateway learns who is there
        # Faults the tests switch on.
        self.fail_health = False
        self.power_loss_at: float | None = None   # fraction of the payload after which power goes
        self.power_off_for = 0.3
        self.offline = False
        # What happened, for tests to assert on.
        self.refusals: list[str] = []
        self.boots = 0
        self.power_losses = 0
        self.rolled_back_by_itself = 0
        self.activations = 0
        self.touched = False                      # received any update traffic at all
        self._sock: trio.socket.SocketType | None = None
        self._powered = trio.Event()
        self._last_reply: tuple[int, bytes] | None = None
        self._trial_scope: trio.CancelScope | None = None
        self._nursery: trio.Nursery | None = None
        self.connected = trio.Event()

    # --- status -----------------------------------------------------------------
    @property
    def config(self) -> dict:
        return json.loads(self.slots["config"].data)

    def status(self) -> dict:
        fw, cfg = self.slots["firmware"], self.slots["config"]
        return {"id": self.id, "hw": self.hw, "version": fw.active["version"], "counter": fw.active["counter"],
                "sha256": fw.active["sha256"], "config_sha256": cfg.active["sha256"],
                "trial": fw.trial, "staged": len(fw.flash) if fw.staged else 0,
                "config_version": cfg.active["version"], "config_counter": cfg.active["counter"],
                "config_trial": cfg.trial, "config": self.config}

    # --- running ------------------------------------------------------------------
    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        # Plain non-blocking socket: a thousand nodes in one process, so every microsecond counts.
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.setblocking(False)
        self._sock.bind(("127.0.0.1", 0))
        self._powered.set()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._boot)
            nursery.start_soon(self._keepalive)
            task_status.started(self)
            await self._receive()

    async def _send(self, msg) -> None:
        if self._powered.is_set() and not self.offline:
            try:
                self._sock.sendto(encode(msg), self.gateway)
            except OSError:
                pass  # the gateway is down; UDP does not care, nor does the node

    async def _boot(self) -> None:
        self.boots += 1
        self.connected = trio.Event()
        # Bootloader: a bank still on trial after a reset is not trusted; go back.
        for slot in self.slots.values():
            if slot.trial and slot.revert():
                self.rolled_back_by_itself += 1
        await self._connect()

    async def _connect(self) -> None:
        while not self.connected.is_set():
            await self._send(Connect(self.id))
            with trio.move_on_after(1.0):
                await self.connected.wait()
        await self.hello()

    async def _keepalive(self) -> None:
        while True:
            await trio.sleep(self.keepalive)
            if self.connected.is_set():
                await self.hello()

    async def hello(self) -> None:
        await self._send(Publish(T_HELLO, 0, canonical(self.status()), qos1=False))

    async def _receive(self) -> None:
        while True:
            await trio.lowlevel.wait_readable(self._sock)
            for _ in range(64):   # a window of chunks arrives together: take them in one wake-up
                try:
                    data, addr = self._sock.recvfrom(70000)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    continue   # ICMP port unreachable while the gateway restarts
                if not self._powered.is_set() or self.offline:
                    continue   # nobody home
                try:
                    msg = decode(data)
                except WireError:
                    continue
                if isinstance(msg, Connack):
                    self.connected.set()
                elif isinstance(msg, Disconnect):
                    if self.connected.is_set():   # the gateway forgot us (restarted): connect again
                        self.connected = trio.Event()
                        self._nursery.start_soon(self._connect)
                elif isinstance(msg, Publish):
                    await self._on_publish(msg)

    async def _reply(self, msg_id: int, body: dict) -> None:
        raw = canonical(body)
        self._last_reply = (msg_id, raw)
        await self._send(Publish(T_REPLY, msg_id, raw, qos1=False))

    async def _on_publish(self, msg: Publish) -> None:
        self.touched = True
        if msg.topic == T_CHUNK:
            await self._on_chunk(msg)
            return
        if self._last_reply is not None and self._last_reply[0] == msg.msg_id:
            await self._send(Publish(T_REPLY, msg.msg_id, self._last_reply[1], qos1=False))  # a retransmit
            return
        try:
            body = json.loads(msg.data)
        except ValueError:
            await self._reply(msg.msg_id, {"status": "error", "detail": "not JSON"})
            return
        if msg.topic == T_OFFER:
            await self._reply(msg.msg_id, self._on_offer(body))
        elif msg.topic == T_CONFIG:
            await self._reply(msg.msg_id, self._on_config(body))
        elif msg.topic == T_CMD:
            answer = await self._on_cmd(body)
            if answer is not None:
                await self._reply(msg.msg_id, answer)
        else:
            await self._send(Puback(msg.topic, msg.msg_id, RC_NOT_SUPPORTED))

    # --- the update agent ---------------------------------------------------------
    def _check(self, envelope: Any) -> dict:
        """The node's own checks of a signed envelope; returns the manifest or raises ValueError(check, detail)."""
        if not isinstance(envelope, dict) or not isinstance(envelope.get("signed"), dict):
            raise ValueError("format", "not an envelope")
        signed = envelope["signed"]
        message = canonical(signed)
        ok = False
        for sig in envelope.get("signatures") or []:
            key = self.trusted.get(sig.get("keyid")) if isinstance(sig, dict) else None
            if key is None:
                continue
            try:
                key.verify(message, bytes.fromhex(sig.get("sig", "")))
                ok = True
                break
            except (nacl.exceptions.BadSignatureError, ValueError):
                pass
        if not ok:
            raise ValueError("signature", "no valid signature by a key this node trusts")
        if signed.get("expires", 0) <= time.time():
            raise ValueError("expired", f"expired at {signed.get('expires')}")
        if self.hw not in signed.get("hardware_ids", []):
            raise ValueError("hardware", f"for {signed.get('hardware_ids')}, this node is {self.hw}")
        kind = signed.get("kind")
        if kind not in self.slots:
            raise ValueError("format", f"unknown kind {kind!r}")
        slot = self.slots[kind]
        if signed["hashes"]["sha256"] == slot.active["sha256"]:
            return signed   # what runs already: the caller answers installed/trial
        if int(signed.get("release_counter", -1)) <= int(slot.active["counter"]):
            raise ValueError("counter", f"release counter {signed.get('release_counter')} is not above {slot.active['counter']}")
        base = signed.get("min_current_version")
        if base is not None and _version(slot.active["version"]) < _version(base):
            raise ValueError("min-version", f"needs {base}, runs {slot.active['version']}")
        return signed

    def _on_offer(self, envelope: Any) -> dict:
        try:
            m = self._check(envelope)
        except ValueError as exc:
            check, detail = exc.args
            self.refusals.append(check)
            return {"status": "refused", "check": check, "detail": detail}
        slot = self.slots[m["kind"]]
        if m["hashes"]["sha256"] == slot.active["sha256"]:
            return {"status": "trial" if slot.trial else "installed"}
        if slot.staged is None or slot.staged["hashes"]["sha256"] != m["hashes"]["sha256"]:
            slot.staged, slot.flash = m, bytearray()
        return {"status": "ready", "offset": len(slot.flash)}

    async def _on_chunk(self, msg: Publish) -> None:
        slot = self.slots["firmware"]
        try:
            offset, data = split_chunk(msg.data)
        except WireError:
            await self._send(Puback(T_CHUNK, msg.msg_id, RC_NOT_SUPPORTED))
            return
        if slot.staged is None or offset > len(slot.flash) or offset + len(data) > slot.staged["length"]:
            await self._send(Puback(T_CHUNK, msg.msg_id, RC_NOT_SUPPORTED))
            return
        if offset == len(slot.flash):
            slot.flash += data
        await self._send(Puback(T_CHUNK, msg.msg_id, RC_ACCEPTED))
        if self.power_loss_at is not None and len(slot.flash) >= self.power_loss_at * slot.staged["length"]:
            self.power_loss_at = None
            self._nursery.start_soon(self.lose_power, self.power_off_for)

    def _on_config(self, body: dict) -> dict:
        """A config delta against what runs; the result must hash to the signed config."""
        slot = self.slots["config"]
        if slot.staged is None:
            return {"status": "error", "detail": "no config offered"}
        desired = dict(self.config)
        for key, value in (body.get("delta") or {}).items():
            if value is None:
                desired.pop(key, None)
            else:
                desired[key] = value
        raw = canonical(desired)
        if hashlib.sha256(raw).hexdigest() != slot.staged["hashes"]["sha256"]:
            self.refusals.append("hash")
            return {"status": "refused", "check": "hash", "detail": "delta does not give the signed config"}
        slot.flash = bytearray(raw)
        return {"status": "staged", "offset": len(raw)}

    async def _on_cmd(self, body: dict) -> dict | None:
        op, kind = body.get("op"), body.get("kind", "firmware")
        slot = self.slots.get(kind)
        if slot is None:
            return {"status": "error", "detail": f"unknown kind {kind!r}"}
        if op == "report":
            return {"status": "ok", **self.status()}
        if op == "activate":
            return await self._activate(slot, kind)
        if op == "health":
            # Healthy: the self-test passes and it runs what the gateway expects (not a bank it fell back to).
            expected = body.get("sha256")
            healthy = not self.fail_health and (expected is None or expected == slot.active["sha256"])
            return {"status": "ok", "healthy": healthy, "trial": slot.trial, "version": slot.active["version"]}
        if op == "commit":
            if not slot.trial:
                return {"status": "error", "detail": f"nothing on trial (running {slot.active['version']})"}
            slot.trial = False
            self._end_trial()
            await self.hello()
            return {"status": "committed", "version": slot.active["version"]}
        if op == "rollback":
            slot.staged, slot.flash = None, bytearray()
            reverted = slot.revert()
            self._end_trial()
            await self.hello()
            return {"status": "rolled_back", "reverted": reverted, "version": slot.active["version"]}
        return {"status": "error", "detail": f"unknown op {op!r}"}

    async def _activate(self, slot: Slot, kind: str) -> dict:
        m = slot.staged
        if m is None:
            if slot.trial:
                return {"status": "activated", "version": slot.active["version"]}   # a retransmit after the reboot
            return {"status": "error", "detail": "nothing staged"}
        data = bytes(slot.flash)
        if len(data) != m["length"] or hashlib.sha256(data).hexdigest() != m["hashes"]["sha256"]:
            self.refusals.append("hash")
            return {"status": "refused", "check": "hash", "detail": f"staged {len(data)} of {m['length']} bytes or hash differs"}
        self.activations += 1
        slot.previous, slot.previous_data = slot.active, slot.data
        slot.active = {"version": m["version"], "counter": m["release_counter"], "sha256": m["hashes"]["sha256"]}
        slot.data, slot.staged, slot.flash, slot.trial = data, None, bytearray(), True
        if kind == "firmware":
            await trio.sleep(self.reboot_time)   # the reboot into the other bank
        if self.fail_health:
            # The self-test after boot fails: the bootloader goes back by itself, no gateway needed.
            slot.revert()
            self.rolled_back_by_itself += 1
        else:
            self._start_trial_timer(slot)
        await self.hello()
        return {"status": "activated", "version": slot.active["version"], "trial": slot.trial}

    def _start_trial_timer(self, slot: Slot) -> None:
        self._end_trial()
        scope = self._trial_scope = trio.CancelScope()

        async def watchdog() -> None:
            with scope:
                await trio.sleep(self.trial_window)
                if slot.trial and slot.revert():   # never committed: not trusted
                    self.rolled_back_by_itself += 1
                    await self.hello()
        self._nursery.start_soon(watchdog)

    def _end_trial(self) -> None:
        if self._trial_scope is not None:
            self._trial_scope.cancel()
            self._trial_scope = None

    # --- faults -------------------------------------------------------------------
    async def lose_power(self, off_for: float) -> None:
        """RAM is gone, flash stays: staged bytes survive, a bank on trial does not."""
        self.power_losses += 1
        self._powered = trio.Event()
        self._last_reply = None
        self._end_trial()
        await trio.sleep(off_for)
        self._powered.set()
        await self._boot()

    async def go_online(self) -> None:
        self.offline = False
        await self.hello()
