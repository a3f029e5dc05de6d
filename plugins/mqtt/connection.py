"""One broker connection: a paho-mqtt client whose network loop runs in its own thread, driven from trio.

paho calls back on its thread; every callback only appends to a deque and, at most
once per burst, schedules a drain on the trio thread (trio token `run_sync_soon`), so
all bookkeeping (which delivery a PUBACK completes, the inbox) happens on the trio
thread without locks. paho reconnects by itself with backoff (reconnect_min..max).
"""

from __future__ import annotations

import collections
import logging
import socket
import ssl
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import paho.mqtt.client as mqtt
import trio
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from .config import MqttConfig

log = logging.getLogger(__name__)

# CONNACK refusals a retry will not fix: the site file must change (MQTT 5 codes; paho maps 3.1.1's onto them).
PERMANENT_REFUSALS = {0x84, 0x85, 0x86, 0x87, 0x8C}
# PUBACK reason codes that mean "this message will never be accepted".
PERMANENT_PUBACK = {0x87, 0x90, 0x95, 0x99}
# Linux only: acknowledge received TCP segments at once instead of after the delayed-ACK timer.
_TCP_QUICKACK = getattr(socket, "TCP_QUICKACK", None)


class NotConnected(Exception):
    pass


_PUBLISH, _DISCONNECT = 0x30, 0xE0
_COALESCE_BYTES = 64 * 1024
_READ_CHUNK = 64 * 1024


class _Client(mqtt.Client):
    """paho's client, remembering why the last (re)connect attempt failed (paho only logs 'retrying'),
    reading the socket in large chunks and writing queued packets in one send per run."""

    last_error: BaseException | None = None
    _rbuf: bytes = b""          # bytes received and not yet parsed (paho's thread only)
    _rpos = 0

    def _sock_recv(self, bufsize: int) -> bytes:
        # paho asks the socket for each packet's first byte, then each byte of its length, then
        # its body: three or more recv() calls per received message, each a syscall and a GIL
        # hand-off to the trio thread and back. Read what the kernel has in one call instead and
        # serve paho's small reads from it; `loop_read` parses it all before paho selects again.
        pos = self._rpos
        buf = self._rbuf
        if pos >= len(buf):
            buf = super()._sock_recv(_READ_CHUNK)
            if not buf:
                return buf           # closed: paho's own handling
            self._rbuf, pos = buf, 0
        end = pos + bufsize
        self._rpos = end
        return buf[pos:end] if pos or end < len(buf) else buf

    def loop_read(self, max_packets: int = 1):
        # paho parses one packet per select() wake-up; parse every complete packet already read.
        rc = super().loop_read(max_packets)
        while not rc and self._rpos < len(self._rbuf) and self._sock is not None:
            rc = super().loop_read(max_packets)
        return rc

    def _sock_close(self) -> None:
        self._rbuf, self._rpos = b"", 0      # bytes of a lost connection are never parsed
        super()._sock_close()

    # Set by a subscribing Connection: takes each received QoS 0/1 message (a `Received`).
    on_received: Callable[[Received], None] | None = None

    def _handle_publish(self):
        # paho builds a v5 Properties object (dozens of attribute writes) and an MQTTMessage
        # with its MQTTMessageInfo for every received PUBLISH, then matches topic callbacks
        # under two locks: most of its thread's time at thousands of messages a second. A
        # plain QoS 0/1 message without properties (nearly all of them) is parsed here;
        # anything else (QoS 2, properties, a malformed or non-UTF-8 topic) is paho's.
        take = self.on_received
        if take is not None:
            header = self._in_packet["command"]
            qos = (header & 0x06) >> 1
            if qos < 2:
                parsed = parse_publish(self._in_packet["packet"], qos, self._protocol == mqtt.MQTTv5)
                if parsed is not None:
                    topic, mid, payload = parsed
                    take(Received(topic, payload, qos, mid, bool(header & 0x01), bool(header & 0x08)))
                    if qos == 1 and not self._manual_ack:
                        return self._send_puback(mid)
                    return mqtt.MQTT_ERR_SUCCESS
        return super()._handle_publish()

    def _packet_write(self):
        # paho sends each queued packet with its own send(): a syscall, and a hand-over of the
        # GIL to the trio thread and back, per message. Packets paho does nothing with once
        # written (all but QoS 0 PUBLISH and DISCONNECT) are joined into one packet, in order,
        # so paho's own loop sends them at once. Runs only on paho's thread, which alone takes
        # packets off the left of the queue; other threads only append on the right.
        out = getattr(self, "_out_packet", None)
        if out is not None and len(out) > 1:
            try:
                _coalesce(out)
            except Exception:  # noqa: BLE001 - never worse than paho's own writing
                pass
        return super()._packet_write()

    def reconnect(self):
        try:
            rc = super().reconnect()
        except OSError as exc:
            self.last_error = exc
            raise
        self.last_error = None
        return rc


class Received:
    """A received message, as the adapter reads it (the attributes of paho's MQTTMessage it uses)."""

    __slots__ = ("topic", "payload", "qos", "mid", "retain", "dup")
    properties = None

    def __init__(self, topic: str, payload: bytes, qos: int, mid: int, retain: bool = False, dup: bool = False):
        self.topic, self.payload, self.qos, self.mid, self.retain, self.dup = topic, payload, qos, mid, retain, dup


def parse_publish(packet: bytes, qos: int, v5: bool) -> tuple[str, int, bytes] | None:
    """(topic, packet id, payload) of a PUBLISH body (after the fixed header), or None when it
    is not the plain case (v5 properties present, empty or non-UTF-8 topic, truncated)."""
    n = len(packet)
    if n < 2:
        return None
    pos = 2 + ((packet[0] << 8) | packet[1])
    if pos > n or pos == 2:
        return None
    try:
        topic = packet[2:pos].decode()
    except UnicodeDecodeError:
        return None
    mid = 0
    if qos:
        if pos + 2 > n:
            return None
        mid = (packet[pos] << 8) | packet[pos + 1]
        pos += 2
    if v5:
        if pos >= n or packet[pos]:
            return None          # properties (or a truncated packet): paho parses those
        pos += 1
    return topic, mid, packet[pos:]


def _plain(packet: dict) -> bool:
    kind = packet["command"] & 0xF0
    return kind != _DISCONNECT and not (kind == _PUBLISH and packet["qos"] == 0)


def _coalesce(out: collections.deque) -> None:
    """Join the leading run of plain packets (see `_Client._packet_write`) into one."""
    first = out[0]
    if not _plain(first) or not _plain(out[1]):
        return
    taken = [out.popleft()]
    size = first["to_process"]
    while out and size < _COALESCE_BYTES and _plain(out[0]):
        p = out.popleft()
        taken.append(p)
        size += p["to_process"]
    data = b"".join(bytes(p["packet"][p["pos"]:]) if p["pos"] else p["packet"] for p in taken)
    out.appendleft({"command": first["command"], "mid": first["mid"], "qos": first["qos"], "pos": 0,
                    "to_process": len(data), "packet": data, "info": first["info"]})


class _LastError(logging.Handler):
    """Keeps paho's last warning or error (why a socket failed, e.g. a TLS alert) for our reasons."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.text: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        self.text = record.getMessage()


class Delivery:
    """The PUBACKs one `publish_many` waits for."""

    __slots__ = ("remaining", "sent", "event", "error", "permanent")

    def __init__(self, n: int):
        self.remaining = n
        self.sent = n
        self.event = trio.Event()
        self.error: str | None = None
        self.permanent = False
        if n == 0:
            self.event.set()

    def fail(self, error: str, permanent: bool = False) -> None:
        if self.error is None:
            self.error = error
            self.permanent = permanent
        self.event.set()


class Connection:
    def __init__(self, cfg: MqttConfig, *, client_id: str, base_dir: Path | None = None,
                 will: tuple[str, str, bool] | None = None, birth: tuple[str, str, bool] | None = None,
                 subscriptions: Iterable[tuple[str, int]] = (), manual_ack: bool = False,
                 on_state: Callable[[str, str], None] | None = None):
        self.cfg = cfg
        self.client_id = client_id
        self.base_dir = base_dir or Path.cwd()
        self.will = will
        self.birth = birth
        self.subscriptions = list(subscriptions)
        self.manual_ack = manual_ack
        self.on_state = on_state
        self.where = f"mqtt {cfg.host}:{cfg.effective_port}"
        self.state = "connecting"          # connecting, online, offline, refused
        self.reason = ""
        self.refusal: int | None = None    # CONNACK reason code when refused
        self.generation = 0                # +1 per CONNACK: acks of an older connection are not sent
        self.connects = 0
        self.published = 0
        self.disconnects = 0
        self.session_present = False
        self.connected_at: float | None = None   # time.monotonic() of the last CONNACK (paho thread)
        self.last_connect_error: BaseException | None = None
        self._last_error = _LastError()
        self._online = trio.Event()
        self._settled = trio.Event()       # first outcome (online or refused or gave up) known
        self._subscribed = trio.Event()    # the broker answered the first SUBSCRIBE (SUBACK)
        self._pending: dict[int, Delivery] = {}
        self._acks: collections.deque = collections.deque()
        self._inbox: collections.deque = collections.deque()
        self._inbox_event = trio.Event()
        self._ack_wake = False
        # Wake trio for PUBACKs only once the outstanding ones could all be in (or after 2 ms):
        # one wake per delivery instead of one per PUBACK (each costs a syscall and a GIL hand-off).
        self._ack_threshold = 1
        self._ack_woke = 0.0
        self._in_wake = False
        self._token: trio.lowlevel.TrioToken | None = None
        self._quickack: Any = None         # the socket, while it takes TCP_QUICKACK (re-armed per PUBACK)
        self.client: _Client | None = None

    # --- lifecycle (trio thread) ----------------------------------------------------
    def _path(self, p: str) -> str:
        path = Path(p)
        return str(path if path.is_absolute() else self.base_dir / path)

    def _tls_context(self) -> ssl.SSLContext:
        tls = self.cfg.tls
        assert tls is not None
        try:
            ctx = ssl.create_default_context(cafile=self._path(tls.ca) if tls.ca else None)
            if tls.cert and tls.key:
                ctx.load_cert_chain(self._path(tls.cert), self._path(tls.key))
        except (OSError, ssl.SSLError) as exc:
            from sitegate.errors import EntryError
            raise EntryError(f"{self.where}: tls: cannot load certificates: {exc}") from None
        if tls.insecure:
            ctx.check_hostname = False
        return ctx

    def _build(self) -> _Client:
        cfg = self.cfg
        v5 = cfg.protocol == "5"
        client = _Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id,
                         protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
                         clean_session=None if v5 else not cfg.persistent,
                         manual_ack=self.manual_ack)
        # paho scans its whole queue on every PUBACK when it limits in-flight messages itself;
        # each delivery bounds what it publishes, so let paho send everything at once.
        client.max_inflight_messages_set(0)
        client.max_queued_messages_set(0)
        client.reconnect_delay_set(float(cfg.reconnect_min), float(cfg.reconnect_max))
        if cfg.username is not None:
            client.username_pw_set(cfg.username, cfg.password)
        if cfg.tls is not None:
            client.tls_set_context(self._tls_context())
        if self.will:
            topic, payload, retain = self.will
            client.will_set(topic, payload, qos=1, retain=retain)
        client.on_connect = self._t_connect
        client.on_disconnect = self._t_disconnect
        client.on_publish = self._t_publish
        client.on_message = self._t_message
        client.on_received = self._t_message_fast
        client.on_subscribe = self._t_subscribe
        client.on_connect_fail = self._t_connect_fail
        client.on_socket_open = self._t_socket_open
        # paho explains socket failures only in its log; a WARNING-level logger costs one
        # level check per packet (an on_log callback would format every debug line).
        self._paho_log = logging.getLogger(f"{__name__}.paho.{self.client_id}")
        self._paho_log.setLevel(logging.WARNING)
        self._paho_log.addHandler(self._last_error)
        client.enable_logger(self._paho_log)
        return client

    async def start(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self.client = client = self._build()
        cfg = self.cfg
        kw: dict[str, Any] = {}
        if cfg.protocol == "5":
            props = Properties(PacketTypes.CONNECT)
            props.ReceiveMaximum = cfg.receive_maximum
            if cfg.persistent:
                props.SessionExpiryInterval = int(cfg.session_expiry)
            kw = {"clean_start": not cfg.persistent, "properties": props}
        client.connect_async(cfg.host, cfg.effective_port, keepalive=max(1, int(cfg.keepalive)), **kw)
        client.loop_start()

    async def wait_settled(self, timeout: float) -> None:
        with trio.move_on_after(timeout):
            await self._settled.wait()
            # A subscribing connection is ready once its subscriptions are answered: a message
            # published after the entry is loaded is then delivered to it, not missed.
            if self.subscriptions and self.state == "online":
                await self._subscribed.wait()
        if not self._settled.is_set():
            err = self.client.last_error if self.client else None
            self.reason = f"no connection within {timeout:g} s" + (f": {err}" if err else "")

    async def wait_online(self, timeout: float | None = None) -> bool:
        if timeout is None:
            await self._online.wait()
        else:
            with trio.move_on_after(timeout):
                await self._online.wait()
        return self._online.is_set()

    @property
    def online(self) -> bool:
        return self.state == "online"

    async def stop(self, status: tuple[str, str, bool] | None = None) -> None:
        """Say goodbye (the `offline` status, since a clean disconnect suppresses the will) and stop the thread."""
        client = self.client
        if client is None:
            return
        if status and self.online:
            try:
                delivery = self.publish_many([(status[0], status[1].encode())], 1, status[2])
                with trio.move_on_after(2.0):
                    await delivery.event.wait()
            except NotConnected:
                pass
        # Stopping: paho's thread may run its loop once more after the socket closed and log
        # "Client is not connected" at ERROR; nothing it says now is news.
        self._paho_log.setLevel(logging.CRITICAL)
        client.disconnect()
        await trio.to_thread.run_sync(client.loop_stop, abandon_on_cancel=True)
        self._paho_log.removeHandler(self._last_error)
        self.client = None
        self._set_state("offline", "stopped")

    # --- publishing (trio thread) ------------------------------------------------------
    def publish_many(self, messages: Iterable[tuple[str, bytes]], qos: int, retain: bool = False,
                     delivery: Delivery | None = None) -> Delivery:
        """Hand messages to paho; the returned Delivery completes when every PUBACK is in.

        `messages` may be a generator: encoding the next message while paho's thread
        sends the previous ones overlaps the two. Pass the `delivery` of an earlier
        call to add to it (a long delivery published in slices).
        """
        if not self.online or self.client is None:
            raise NotConnected(f"{self.where}: not connected ({self.reason or self.state})")
        if delivery is None:
            delivery = Delivery(0)
            delivery.sent = 0
        if delivery.event.is_set() and delivery.error is None:
            delivery.event = trio.Event()    # completed slices so far; more to wait for now
        pending = self._pending
        client = self.client
        publish = client.publish
        n = 0
        self._ack_threshold = 1 << 30      # while publishing, only the 2 ms fallback wakes us
        # paho wakes its network thread with one byte on a socket pair per publish() (a syscall
        # and a thread switch each); in a burst, wake it every 32 messages instead. Guarded:
        # if a paho release renames the attribute, publishing simply stays as paho does it.
        wake = getattr(client, "_sockpairW", None)
        if wake is not None:
            client._sockpairW = None
        try:
            # PUBACKs are matched on this thread only after this loop ends (the drain is scheduled
            # through run_sync_soon), so registering each mid after publish() cannot miss its ack.
            for topic, payload in messages:
                info = publish(topic, payload, qos, retain)
                if info.rc != mqtt.MQTT_ERR_SUCCESS:
                    delivery.fail(f"{self.where}: publish to {topic!r} refused: {mqtt.error_string(info.rc)}")
                    break
                n += 1
                if qos:
                    pending[info.mid] = delivery
                if wake is not None and not n & 31:
                    try:
                        wake.send(b"0")   # let paho's thread send what is queued while we encode on
                    except (BlockingIOError, OSError):
                        pass
        finally:
            if wake is not None:
                client._sockpairW = wake
                try:
                    wake.send(b"0")
                except (BlockingIOError, OSError):
                    pass
        if qos:
            delivery.remaining += n
        self._ack_threshold = max(1, len(pending))
        if len(self._acks) >= self._ack_threshold and not self._ack_wake:
            self._drain_acks()
        if delivery.remaining == 0:
            delivery.event.set()
        delivery.sent += n
        self.published += n
        return delivery

    def _drain_acks(self) -> None:
        self._ack_wake = False
        acks, pending = self._acks, self._pending
        try:
            self._drain(acks, pending)
        finally:
            self._ack_threshold = max(1, len(pending))

    def _drain(self, acks: collections.deque, pending: dict[int, Delivery]) -> None:
        while acks:
            mid, code = acks.popleft()
            delivery = pending.pop(mid, None)
            if delivery is None:
                continue        # a birth message, or a delivery that was abandoned
            if code:
                delivery.fail(f"{self.where}: broker refused a message (PUBACK reason 0x{code:02x})",
                              permanent=code in PERMANENT_PUBACK)
            delivery.remaining -= 1
            if delivery.remaining == 0:
                delivery.event.set()

    # --- receiving (trio thread) ---------------------------------------------------------
    async def receive(self, max_items: int = 10_000) -> list[tuple[int, mqtt.MQTTMessage]]:
        """Wait for received messages; returns (generation, message) pairs in arrival order."""
        inbox = self._inbox
        while not inbox:
            self._inbox_event = trio.Event()
            await self._inbox_event.wait()
        out = []
        while inbox and len(out) < max_items:
            out.append(inbox.popleft())
        return out

    def ack(self, generation: int, mid: int, qos: int) -> bool:
        """PUBACK a received message, if it came over the current connection (else the broker resends it)."""
        if qos == 0:
            return True
        if generation != self.generation or self.client is None or not self.online:
            return False
        self.client.ack(mid, qos)
        return True

    def ack_many(self, received: Iterable[tuple[int, Any]]) -> int:
        """PUBACK (generation, message) pairs in order, waking paho's thread once; returns how many
        could not be acknowledged (from an older connection: the broker sends those again)."""
        client = self.client
        stale = 0
        if client is None or not self.online:
            return sum(1 for _, m in received if m.qos)
        generation = self.generation
        wake = getattr(client, "_sockpairW", None)   # see publish_many
        if wake is not None:
            client._sockpairW = None
        try:
            for gen, msg in received:
                if msg.qos:
                    if gen != generation:
                        stale += 1
                    else:
                        client.ack(msg.mid, msg.qos)
        finally:
            if wake is not None:
                client._sockpairW = wake
                try:
                    wake.send(b"0")
                except OSError:
                    pass
        return stale

    def _wake_inbox(self) -> None:
        self._in_wake = False
        self._inbox_event.set()

    # --- state (trio thread) -----------------------------------------------------------------
    def _set_state(self, state: str, reason: str) -> None:
        changed = state != self.state or reason != self.reason
        self.state, self.reason = state, reason
        if state == "online":
            self._online.set()
        elif self._online.is_set():
            self._online = trio.Event()
        if state in ("online", "refused"):
            self._settled.set()
        if changed and self.on_state is not None:
            self.on_state(state, reason)

    def _connected(self, generation: int, session_present: bool) -> None:
        self.connects += 1
        self.session_present = session_present
        self.refusal = None
        self._set_state("online", "session resumed" if session_present else "")

    def _refused(self, code: int, text: str) -> None:
        self.refusal = code
        self._set_state("refused", f"broker refused the connection: {text} (0x{code:02x})")

    def _connect_failed(self, err: BaseException | None) -> None:
        self.last_connect_error = err
        self._set_state("offline", f"cannot connect: {err}" if err else "cannot connect")
        self._settled.set()

    def _lost(self, text: str) -> None:
        self.disconnects += 1
        pending, self._pending = self._pending, {}
        for delivery in set(pending.values()):
            delivery.fail(f"{self.where}: connection lost before the broker acknowledged ({text})")
        if self.state != "refused":
            self._set_state("offline", text)
        self._settled.set()

    # --- paho thread: keep these tiny -------------------------------------------------------
    def _call(self, fn: Callable[..., Any], *args: Any) -> None:
        try:
            self._token.run_sync_soon(fn, *args)   # type: ignore[union-attr]
        except trio.RunFinishedError:
            pass

    def _t_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._call(self._refused, reason_code.value, str(reason_code))
            return
        self.generation += 1
        self.connected_at = time.monotonic()
        if self.subscriptions:
            if self.cfg.protocol == "5":
                client.subscribe([(f, SubscribeOptions(qos=q)) for f, q in self.subscriptions])
            else:
                client.subscribe(self.subscriptions)
        if self.birth:
            topic, payload, retain = self.birth
            client.publish(topic, payload, qos=1, retain=retain)
        self._call(self._connected, self.generation, bool(getattr(flags, "session_present", False)))

    def _t_connect_fail(self, client, userdata) -> None:
        err = client.last_error if isinstance(client, _Client) else None
        self._call(self._connect_failed, err)

    def _t_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        text = str(reason_code) if reason_code is not None else "disconnected"
        if text in ("Unspecified error", "Success"):
            text = self._last_error.text or text
            self._last_error.text = None
        self._call(self._lost, text)

    def _t_socket_open(self, client, userdata, sock) -> None:
        """Small packets out and their acknowledgements in without TCP's delays.

        A delivery ends waiting for its last PUBACKs with nothing more to send: with Nagle
        on our side and delayed ACKs answering a broker that batches its PUBACKs behind
        Nagle, each such tail stalled ~40 ms (Linux's delayed-ACK timer) on loopback.
        QUICKACK is not sticky on Linux: `_t_publish` arms it on every PUBACK, so only a
        connection that publishes uses it (on a subscribing one, acknowledging each segment
        of the broker's stream at once measurably slowed ingestion). A socket that takes
        neither option (not TCP) simply keeps the defaults.
        """
        self._quickack = None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if _TCP_QUICKACK is not None:
                self._quickack = sock
        except (AttributeError, OSError, ValueError):
            pass

    def _t_publish(self, client, userdata, mid, reason_code, properties) -> None:
        quick = self._quickack
        if quick is not None:
            try:
                quick.setsockopt(socket.IPPROTO_TCP, _TCP_QUICKACK, 1)
            except (OSError, ValueError):
                self._quickack = None
        acks = self._acks
        acks.append((mid, reason_code.value if reason_code.is_failure else 0))
        if not self._ack_wake:
            now = time.monotonic()
            if len(acks) >= self._ack_threshold or now - self._ack_woke > 0.002:
                self._ack_wake = True
                self._ack_woke = now
                self._call(self._drain_acks)

    def _t_message(self, client, userdata, message) -> None:
        self._t_message_fast(message)

    def _t_message_fast(self, message: Any) -> None:
        self._inbox.append((self.generation, message))
        if not self._in_wake:
            self._in_wake = True
            self._call(self._wake_inbox)

    def _t_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        bad = [str(rc) for rc in reason_codes if rc.is_failure]
        if bad:
            self._call(self._set_state, "online", f"subscription refused: {', '.join(bad)}")
        self._call(self._subscribed.set)

    # --- for diagnostics ------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        err = self.client.last_error if self.client else None
        return {"broker": self.where, "client_id": self.client_id, "state": self.state, "reason": self.reason,
                "connects": self.connects, "disconnects": self.disconnects, "in_flight": len(self._pending),
                "session_present": self.session_present, "last_error": str(err) if err else None}
