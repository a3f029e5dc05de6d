"""The MQTT-SN gateway engine: sessions, topics, QoS flows, sleep, wills, on a trio UDP socket.

Datagrams go through the sans-IO codec (codec.py); publishes become Batches through
payload.py and are handed to an injected async `deliver(batches) -> bool` (the entry,
__init__.py, points it at the pipeline). QoS 1/2 publishes are acknowledged only after
`deliver` returned True; False (saturated) answers "rejected: congestion" (0x01).
"""

from __future__ import annotations

import collections
import enum
import logging
import socket
import struct
import time
from typing import Any, Awaitable, Callable, Sequence

import attrs
import trio

from sitegate.model import Batch

from . import codec as c
from .codec import DecodeError, ReturnCode, TopicIdType
from .config import GatewayConfig
from .payload import PayloadMapper, has_wildcards, topic_matches, validate_filter
from .subscriptions import SubscriptionTree

log = logging.getLogger(__name__)

Deliver = Callable[[list[Batch]], Awaitable[bool]]
# (udp address, wireless node id of a forwarder-encapsulated client, or None)
Peer = tuple[Any, bytes | None]

_ACCEPTED, _CONGESTION, _INVALID, _NOT_SUPPORTED = (
    ReturnCode.ACCEPTED, ReturnCode.CONGESTION, ReturnCode.INVALID_TOPIC_ID, ReturnCode.NOT_SUPPORTED)


class State(enum.Enum):
    WILL_TOPIC = "awaiting_will_topic"   # CONNECT with will flag: WILLTOPICREQ sent
    WILL_MSG = "awaiting_will_msg"       # WILLMSGREQ sent
    ACTIVE = "active"
    ASLEEP = "asleep"
    AWAKE = "awake"                      # woke with PINGREQ: buffered messages are being sent
    DISCONNECTED = "disconnected"        # persistent session kept after disconnect or loss


@attrs.frozen(slots=True)
class Outgoing:
    """A message for one client: kept in its buffer until sent (and acknowledged at QoS 1/2)."""

    topic: str
    payload: bytes
    qos: int
    retain: bool = False
    # Called once with True when the client has it (QoS 0: sent), False when it was given up.
    done: Callable[[bool], None] | None = attrs.field(default=None, eq=False, repr=False)


def _finish(item: Outgoing, ok: bool) -> None:
    if item.done is not None:
        item.done(ok)


class _Inflight:
    """The one unacknowledged message a client has (the spec allows one at a time)."""

    __slots__ = ("kind", "msg_id", "wire", "sent_at", "retries", "item", "topic_id")

    def __init__(self, kind: str, msg_id: int, wire: bytes, sent_at: float, item: Outgoing, topic_id: int = 0):
        self.kind = kind          # register | publish | pubrel
        self.msg_id = msg_id
        self.wire = wire
        self.sent_at = sent_at
        self.retries = 0
        self.item = item
        self.topic_id = topic_id


class Session:
    """One client's state. Mutable and internal: nothing outside the gateway holds one."""

    __slots__ = ("client_id", "peer", "state", "clean", "keepalive", "sleep", "last_seen", "disconnected_at",
                 "topics", "ids", "next_topic_id", "subs", "will_topic", "will_qos", "will_retain", "will_msg",
                 "known", "outq", "inflight", "next_msg_id", "qos2_in", "qos1_pending", "tokens", "token_at")

    def __init__(self, client_id: str, peer: Peer, now: float, burst: int):
        self.client_id = client_id
        self.peer = peer
        self.state = State.ACTIVE
        self.clean = True
        self.keepalive = 0.0
        self.sleep = 0.0
        self.last_seen = now
        self.disconnected_at = 0.0
        self.topics: dict[int, str] = {}      # normal topic ids of this client
        self.ids: dict[str, int] = {}
        self.known: set[int] = set()          # ids the client knows (its REGISTER, SUBACK, our REGISTER acked)
        self.next_topic_id = 1
        self.subs: dict[str, int] = {}        # topic filter -> granted QoS
        self.will_topic: str | None = None
        self.will_qos = 0
        self.will_retain = False
        self.will_msg = b""
        self.outq: collections.deque[Outgoing] = collections.deque()
        self.inflight: _Inflight | None = None
        self.next_msg_id = 0
        self.qos2_in: dict[int, bool] = {}    # msg id -> True once PUBREC sent (False: being delivered)
        self.qos1_pending: set[int] = set()   # QoS 1 msg ids being delivered (suppresses DUP resends)
        self.tokens = float(burst)
        self.token_at = now

    def reset(self) -> None:
        self.topics.clear()
        self.ids.clear()
        self.known.clear()
        self.next_topic_id = 1
        self.subs.clear()
        self.will_topic = None
        self.will_msg = b""
        self.outq.clear()
        self.inflight = None
        self.qos2_in.clear()

    def msg_id(self) -> int:
        self.next_msg_id = self.next_msg_id % 0xFFFF + 1
        return self.next_msg_id


# A client publish waiting for `deliver`, as a plain tuple (one is made per publish):
# (batch, qos, session, peer, topic_id, msg_id, forward), where forward is
# (topic, payload, qos, retain) for subscribed clients once the pipeline has it, or None.
_Pending = tuple


_PUBACK_OK = struct.Struct(">BBHHB")
_HH = struct.Struct(">HH")

COUNTERS = (
    "datagrams_in", "malformed", "oversize", "rate_limited", "unknown_client", "rejected_clients",
    "sessions_full", "publishes_in", "qos_minus1_in", "publishes_delivered", "congestion", "dropped_qos0",
    "invalid_topic", "duplicates", "buffer_dropped", "sent", "send_dropped", "retransmissions",
    "delivery_failures", "clients_lost", "wills_published", "unmapped_dropped", "unexpected", "internal_errors",
    "bad_payloads",
)


class Gateway:
    """An MQTT-SN v1.2 gateway on one UDP socket.

    Start `serve` in a nursery (`await nursery.start(gw.serve)` returns the bound
    address); `send_to_topic` publishes to subscribed clients; `stats` and
    `diagnostics()` say what happened.
    """

    def __init__(self, config: GatewayConfig, deliver: Deliver, *, device_prefix: str = "", source: str = "",
                 on_event: Callable[..., None] | None = None, clock: Callable[[], float] = time.time,
                 dead_letter: Callable[..., None] | None = None,
                 dead_letters_committed: Callable[[], Awaitable[None]] | None = None):
        self.config = config
        self._deliver = deliver
        self._on_event = on_event or (lambda kind, **data: None)
        self._wall = clock
        # Rule lookups are cached per (topic, client): room for a few topics per session.
        # A payload that does not decode becomes BAD_DECODE readings and, through `dead_letter`
        # (the entry's), a row of the dead-letter table with its raw bytes.
        self._dead_letter = dead_letter
        self._dead_letters_committed = dead_letters_committed
        self._dead_letters_waiting = False      # handed over since the last commit we waited for
        self.mapper = PayloadMapper(config.topics, unmapped=config.unmapped, device_prefix=device_prefix,
                                    source=source, cache_size=max(1024, 4 * config.max_sessions),
                                    on_malformed=self._bad_payload)
        self.predefined = dict(config.predefined)
        self._predefined_ids = {name: tid for tid, name in config.predefined.items()}
        self.sessions: dict[str, Session] = {}      # by client id
        self.by_peer: dict[Peer, Session] = {}
        self.retained: dict[str, Outgoing] = {}
        self.stats = dict.fromkeys(COUNTERS, 0)
        self._pending: collections.deque[_Pending] = collections.deque()
        self._wake = trio.Event()
        self._sock: socket.socket | None = None
        self.address: tuple[str, int] | None = None
        self._anon_tokens = float(config.anonymous_rate_limit)
        self._anon_at = 0.0
        self.subscriptions = SubscriptionTree()   # every client's filters, matched per topic
        # Hot-path copies of settings, and the wall time of the burst being handled.
        self._max_datagram = config.max_datagram
        self._rate = config.rate_limit
        self._burst = config.rate_burst
        self._max_pending = config.max_pending
        self._now_wall = clock()
        self._handlers = {
            c.Connect: self._on_connect, c.WillTopic: self._on_will_topic, c.WillMsg: self._on_will_msg,
            c.Register: self._on_register, c.Regack: self._on_regack, c.Publish: self._on_publish,
            c.Puback: self._on_puback, c.Pubrec: self._on_pubrec, c.Pubrel: self._on_pubrel,
            c.Pubcomp: self._on_pubcomp, c.Subscribe: self._on_subscribe, c.Unsubscribe: self._on_unsubscribe,
            c.Pingreq: self._on_pingreq, c.Pingresp: self._on_pingresp, c.Disconnect: self._on_disconnect,
            c.WillTopicUpd: self._on_will_topic_upd, c.WillMsgUpd: self._on_will_msg_upd,
            c.SearchGw: self._on_searchgw,
        }

    # --- running ------------------------------------------------------------------------
    async def serve(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Bind, then receive, deliver and keep timers until cancelled."""
        cfg = self.config
        family = trio.socket.AF_INET6 if ":" in cfg.host else trio.socket.AF_INET
        sock = trio.socket.socket(family, trio.socket.SOCK_DGRAM)
        try:
            await sock.bind((cfg.host, cfg.port))
            # Receiving drains the socket with plain non-blocking calls after one wait, so a
            # burst of datagrams costs one scheduler round-trip instead of one per datagram.
            raw = socket.socket(fileno=sock.detach())
            raw.setblocking(False)
            try:
                raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
                raw.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            except OSError:  # pragma: no cover - limits differ per OS
                pass
        except BaseException:
            sock.close()
            raise
        self._sock = raw
        self.address = raw.getsockname()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._deliver_loop, name="mqttsn:deliver")
                nursery.start_soon(self._housekeeping, name="mqttsn:timers")
                if float(cfg.advertise_interval) > 0 and cfg.advertise_to:
                    nursery.start_soon(self._advertise_loop, name="mqttsn:advertise")
                task_status.started(self.address)
                await self._receive_loop(raw)
        finally:
            self._sock = None
            raw.close()

    async def _receive_loop(self, sock: socket.socket) -> None:
        size = self.config.max_datagram + 1
        recv = sock.recvfrom
        handle = self._on_datagram
        while True:
            await trio.lowlevel.wait_readable(sock)
            now = trio.current_time()
            self._now_wall = self._wall()   # one reception time per burst (a burst takes milliseconds)
            n = 0
            while n < 512:
                try:
                    data, addr = recv(size)
                except BlockingIOError:
                    break
                except OSError:        # e.g. an ICMP error surfacing: nothing to do but go on
                    break
                n += 1
                try:
                    handle(data, addr, now)
                except Exception:  # noqa: BLE001 - one datagram must never take the gateway down
                    # A bug, not bad input (the fuzz tests pin that): count it, log the first few.
                    self.stats["internal_errors"] += 1
                    if self.stats["internal_errors"] <= 5:
                        log.exception("MQTT-SN gateway: datagram from %r raised (%d so far)", addr,
                                      self.stats["internal_errors"])
            if self._pending:
                self._wake.set()
            if n >= 512:
                await trio.lowlevel.checkpoint()

    def _send(self, peer: Peer, msg: c.Message) -> None:
        self._send_raw(peer, c.encode(msg))

    def _send_raw(self, peer: Peer, wire: bytes) -> None:
        sock = self._sock
        if sock is None:
            return
        addr, node = peer
        if node is not None:
            wire = bytes((3 + len(node), 0xFE, 0)) + node + wire
        try:
            sock.sendto(wire, addr)
            self.stats["sent"] += 1
        except (BlockingIOError, OSError):
            # UDP is best effort; QoS 1/2 retransmission covers what matters.
            self.stats["send_dropped"] += 1

    # --- datagrams ----------------------------------------------------------------------
    def _on_datagram(self, data: bytes, addr: Any, now: float) -> None:
        stats = self.stats
        stats["datagrams_in"] += 1
        n = len(data)
        if n > self._max_datagram:
            stats["oversize"] += 1
            return
        if n >= 7 and data[0] == n and data[1] == 0x0C and not data[2] & 0x40 and data[2] & 0x03 != 0x03:
            # QoS 0/1 PUBLISH from a connected client, nearly all of the traffic: read in
            # place, without building a message object (same checks as codec.decode).
            peer = (addr, None)
            session = self.by_peer.get(peer)
            if session is not None and (session.state is State.ACTIVE or session.state is State.AWAKE):
                if self._admit(session, now):
                    f = data[2]
                    topic_id, msg_id = _HH.unpack_from(data, 3)
                    self._publish_in((f >> 5) & 1, f & 0x03, topic_id, msg_id, data[7:], peer, session,
                                     f & 0x10 != 0)
                return
        try:
            msg = c.decode(data)
        except DecodeError:
            stats["malformed"] += 1
            return
        node = None
        if type(msg) is c.Encapsulated:
            node = msg.node_id
            msg = msg.message
        peer = (addr, node)
        session = self.by_peer.get(peer)
        if session is not None and not self._admit(session, now):
            return
        handler = self._handlers.get(type(msg))
        if handler is None:
            stats["unexpected"] += 1   # ADVERTISE/GWINFO from others, acks a gateway never gets
            return
        handler(msg, peer, session, now)

    def _admit(self, session: Session, now: float) -> bool:
        """Rate limit per client: a token bucket refilled at rate_limit per second."""
        tokens = session.tokens + (now - session.token_at) * self._rate
        burst = self._burst
        tokens = (burst if tokens > burst else tokens) - 1.0
        session.token_at = now
        if tokens < 0:
            session.tokens = 0.0
            self.stats["rate_limited"] += 1
            return False
        session.tokens = tokens
        session.last_seen = now
        return True

    def _connected(self, session: Session | None, peer: Peer) -> bool:
        if session is not None and session.state in (State.ACTIVE, State.AWAKE):
            return True
        self.stats["unknown_client"] += 1
        # Tell a client the gateway does not know it, so it connects again (spec 6.12).
        if session is None or session.state is not State.ASLEEP:
            self._send(peer, c.Disconnect())
        return False

    # --- connection and will --------------------------------------------------------------
    def _on_connect(self, msg: c.Connect, peer: Peer, session: Session | None, now: float) -> None:
        cfg = self.config
        cid = msg.client_id
        if msg.protocol_id != c.PROTOCOL_ID or not cid or len(cid) > cfg.max_client_id_length:
            self.stats["rejected_clients"] += 1
            self._send(peer, c.Connack(_NOT_SUPPORTED))
            return
        if not cfg.client_allowed(cid):
            self.stats["rejected_clients"] += 1
            self._send(peer, c.Connack(_NOT_SUPPORTED))
            return
        if session is not None and session.client_id != cid:
            # Another client id from the same address: the old client is gone.
            self._end_session(session, now, lost=False)
            session = None
        existing = self.sessions.get(cid)
        if existing is None:
            if len(self.sessions) >= cfg.max_sessions and not self._evict_one():
                self.stats["sessions_full"] += 1
                self._send(peer, c.Connack(_CONGESTION))
                return
            existing = Session(cid, peer, now, cfg.rate_burst)
            self.sessions[cid] = existing
        elif existing.peer != peer:
            self.by_peer.pop(existing.peer, None)
        s = existing
        s.peer = peer
        self.by_peer[peer] = s
        s.last_seen = now
        if msg.clean_session:
            self._unsubscribe_all(s)
            _requeue_inflight(s)
            _give_up(s)
            s.reset()
        s.clean = msg.clean_session
        s.keepalive = float(msg.duration)
        s.sleep = 0.0
        s.qos1_pending.clear()
        if msg.will:
            s.state = State.WILL_TOPIC
            self._send(peer, c.WillTopicReq())
            return
        self._connected_now(s)

    def _connected_now(self, s: Session) -> None:
        s.state = State.ACTIVE
        _requeue_inflight(s)     # a reconnect restarts outgoing flows from the buffer
        self._send(s.peer, c.Connack(_ACCEPTED))
        self._on_event("client.connected", client=s.client_id)
        self._pump(s)

    def _on_will_topic(self, msg: c.WillTopic, peer: Peer, session: Session | None, now: float) -> None:
        if session is None or session.state is not State.WILL_TOPIC:
            self.stats["unexpected"] += 1
            return
        if msg.topic is None:        # empty WILLTOPIC: no will after all
            session.will_topic = None
            self._connected_now(session)
            return
        if not self._valid_topic(msg.topic):
            session.will_topic = None
            self._send(peer, c.Connack(_NOT_SUPPORTED))
            self._end_session(session, now, lost=False)
            return
        session.will_topic, session.will_qos, session.will_retain = msg.topic, max(msg.qos, 0), msg.retain
        session.state = State.WILL_MSG
        self._send(peer, c.WillMsgReq())

    def _on_will_msg(self, msg: c.WillMsg, peer: Peer, session: Session | None, now: float) -> None:
        if session is None or session.state is not State.WILL_MSG:
            self.stats["unexpected"] += 1
            return
        session.will_msg = msg.message
        self._connected_now(session)

    def _on_will_topic_upd(self, msg: c.WillTopicUpd, peer: Peer, session: Session | None, now: float) -> None:
        if not self._connected(session, peer):
            return
        if msg.topic is None:
            session.will_topic, session.will_msg = None, b""
        elif not self._valid_topic(msg.topic):
            self._send(peer, c.WillTopicResp(_NOT_SUPPORTED))
            return
        else:
            session.will_topic, session.will_qos, session.will_retain = msg.topic, max(msg.qos, 0), msg.retain
        self._send(peer, c.WillTopicResp(_ACCEPTED))

    def _on_will_msg_upd(self, msg: c.WillMsgUpd, peer: Peer, session: Session | None, now: float) -> None:
        if not self._connected(session, peer):
            return
        session.will_msg = msg.message
        self._send(peer, c.WillMsgResp(_ACCEPTED))

    def _valid_topic(self, topic: str, *, wildcards: bool = False) -> bool:
        if not topic or len(topic) > self.config.max_topic_length:
            return False
        try:
            validate_filter(topic, allow_wildcards=wildcards)
        except ValueError:
            return False
        return True

    def _on_disconnect(self, msg: c.Disconnect, peer: Peer, session: Session | None, now: float) -> None:
        if session is None:
            self._send(peer, c.Disconnect())
            return
        if msg.duration:
            # Sleep: keep everything, buffer messages until the client wakes (spec 6.14).
            session.state = State.ASLEEP
            session.sleep = float(msg.duration)
            session.last_seen = now
            _requeue_inflight(session)
            self._send(peer, c.Disconnect())
            self._on_event("client.asleep", client=session.client_id, duration=msg.duration)
            return
        self._send(peer, c.Disconnect())
        self._end_session(session, now, lost=False)

    def _end_session(self, s: Session, now: float, *, lost: bool) -> None:
        """Disconnect or lose a client: its will goes out if it was lost."""
        if lost:
            self.stats["clients_lost"] += 1
            log.info("MQTT-SN client %r lost (%s)%s", s.client_id,
                     "sleep timer ran out" if s.state is State.ASLEEP else "keep-alive ran out",
                     "; publishing its will" if s.will_topic is not None else "")
            self._on_event("client.lost", client=s.client_id)
            if s.will_topic is not None and s.state not in (State.WILL_TOPIC, State.WILL_MSG):
                self.stats["wills_published"] += 1
                self._publish_will(s)
        else:
            self._on_event("client.disconnected", client=s.client_id)
        if self.by_peer.get(s.peer) is s:
            del self.by_peer[s.peer]
        _requeue_inflight(s)
        s.qos1_pending.clear()
        if s.clean or s.state in (State.WILL_TOPIC, State.WILL_MSG):
            self._unsubscribe_all(s)
            _give_up(s)
            if self.sessions.get(s.client_id) is s:
                del self.sessions[s.client_id]
            s.state = State.DISCONNECTED
        else:
            s.state = State.DISCONNECTED
            s.disconnected_at = now

    def _evict_one(self) -> bool:
        """Make room for a new session by dropping the oldest disconnected persistent one."""
        oldest = None
        for s in self.sessions.values():
            if s.state is State.DISCONNECTED and (oldest is None or s.disconnected_at < oldest.disconnected_at):
                oldest = s
        if oldest is None:
            return False
        self._drop(oldest)
        return True

    def _unsubscribe_all(self, s: Session) -> None:
        for f in s.subs:
            self.subscriptions.remove(f, s.client_id)
        s.subs.clear()

    def _drop(self, s: Session) -> None:
        self._unsubscribe_all(s)
        _give_up(s)
        self.sessions.pop(s.client_id, None)
        if self.by_peer.get(s.peer) is s:
            del self.by_peer[s.peer]

    def _publish_will(self, s: Session) -> None:
        topic, payload = s.will_topic, s.will_msg
        batch = self.mapper.map(topic, payload, s.client_id, self._wall())
        if batch is not None and len(self._pending) < self.config.max_pending:
            self._pending.append((batch, 0, None, None, 0, 0, None))
            self._wake.set()
        self.send_to_topic(topic, payload, s.will_qos, retain=s.will_retain)

    # --- keep-alive and sleep ----------------------------------------------------------------
    def _on_pingreq(self, msg: c.Pingreq, peer: Peer, session: Session | None, now: float) -> None:
        if msg.client_id is not None:
            s = self.sessions.get(msg.client_id)
            if s is not None and s.state in (State.ASLEEP, State.AWAKE):
                if s.peer != peer:    # woke up at another address
                    if self.by_peer.get(s.peer) is s:
                        del self.by_peer[s.peer]
                    other = self.by_peer.get(peer)
                    if other is not None and other is not s:
                        self._end_session(other, now, lost=False)
                    s.peer = peer
                    self.by_peer[peer] = s
                s.last_seen = now
                s.state = State.AWAKE
                self._pump(s)     # sends the buffer; PINGRESP once it is empty
                return
        if session is None or session.state in (State.DISCONNECTED, State.WILL_TOPIC, State.WILL_MSG):
            self.stats["unknown_client"] += 1
            self._send(peer, c.Disconnect())
            return
        if session.state is State.ASLEEP:
            session.state = State.AWAKE
            self._pump(session)
            return
        self._send(peer, c.Pingresp())

    def _on_pingresp(self, msg, peer, session, now) -> None:
        pass   # answer to a gateway PINGREQ (not sent by this gateway); last_seen already updated

    async def _housekeeping(self) -> None:
        cfg = self.config
        grace = cfg.keepalive_grace
        retry = float(cfg.retry_interval)
        expiry = float(cfg.session_expiry)
        while True:
            await trio.sleep(float(cfg.tick))
            now = trio.current_time()
            for s in list(self.sessions.values()):
                st = s.state
                if st is State.DISCONNECTED:
                    if now - s.disconnected_at > expiry:
                        self._drop(s)
                    continue
                if st is State.ASLEEP:
                    if now - s.last_seen > s.sleep * grace:
                        self._end_session(s, now, lost=True)
                    continue
                if st in (State.WILL_TOPIC, State.WILL_MSG):
                    if now - s.last_seen > retry * cfg.retry_count:
                        self._end_session(s, now, lost=False)
                    continue
                ka = s.keepalive if st is State.ACTIVE else max(s.keepalive, s.sleep)
                if ka and now - s.last_seen > ka * grace:
                    self._end_session(s, now, lost=True)
                    continue
                inf = s.inflight
                if inf is not None and now - inf.sent_at > retry:
                    if inf.retries >= cfg.retry_count:
                        self.stats["delivery_failures"] += 1
                        s.inflight = None
                        if inf.kind == "register" and s.outq and s.outq[0] is inf.item:
                            s.outq.popleft()
                        _finish(inf.item, False)
                        self._pump(s)
                    else:
                        inf.retries += 1
                        inf.sent_at = now
                        wire = inf.wire
                        if inf.kind == "publish":   # resent with DUP set (flags octet after the length)
                            i = 1 if wire[0] != 1 else 3
                            wire = wire[:i + 1] + bytes((wire[i + 1] | 0x80,)) + wire[i + 2:]
                        self.stats["retransmissions"] += 1
                        self._send_raw(s.peer, wire)

    async def _advertise_loop(self) -> None:
        cfg = self.config
        interval = float(cfg.advertise_interval)
        wire = c.encode(c.Advertise(cfg.gateway_id, min(int(interval), 0xFFFF)))
        targets = []
        for addr in cfg.advertise_to:
            host, _, port = addr.rpartition(":")
            targets.append(((host, int(port)), None))
        deadline = trio.current_time()
        while True:
            for peer in targets:
                self._send_raw(peer, wire)
            deadline += interval
            await trio.sleep_until(deadline)

    def _on_searchgw(self, msg: c.SearchGw, peer: Peer, session: Session | None, now: float) -> None:
        self._send(peer, c.GwInfo(self.config.gateway_id))

    # --- topics ---------------------------------------------------------------------------
    def _topic_id_for(self, s: Session, topic: str) -> int | None:
        """The normal topic id of `topic` for this client, assigned if new; None if the table is full."""
        tid = s.ids.get(topic)
        if tid is not None:
            return tid
        if len(s.topics) >= self.config.max_topics_per_client:
            return None
        tid = s.next_topic_id
        while tid in s.topics or tid in (0, 0xFFFF):
            tid = tid % 0xFFFE + 1
        s.next_topic_id = tid % 0xFFFE + 1
        s.topics[tid] = topic
        s.ids[topic] = tid
        return tid

    def _on_register(self, msg: c.Register, peer: Peer, session: Session | None, now: float) -> None:
        if not self._connected(session, peer):
            return
        if not self._valid_topic(msg.topic_name):
            self._send(peer, c.Regack(0, msg.msg_id, _NOT_SUPPORTED))
            return
        tid = self._topic_id_for(session, msg.topic_name)
        if tid is None:
            self._send(peer, c.Regack(0, msg.msg_id, _CONGESTION))
            return
        session.known.add(tid)
        self._send(peer, c.Regack(tid, msg.msg_id, _ACCEPTED))

    def _resolve(self, s: Session | None, tid_type: TopicIdType, topic_id: int) -> str | None:
        if tid_type is TopicIdType.NORMAL:
            return None if s is None else s.topics.get(topic_id)
        if tid_type is TopicIdType.PREDEFINED:
            return self.predefined.get(topic_id)
        return c.short_topic_name(topic_id)

    # --- publishes from clients ----------------------------------------------------------------
    def _on_publish(self, msg: c.Publish, peer: Peer, session: Session | None, now: float) -> None:
        if msg.qos == -1:
            self._on_publish_anonymous(msg, peer, session, now)
            return
        if session is None or (session.state is not State.ACTIVE and session.state is not State.AWAKE):
            self._connected(session, peer)
            return
        self._publish_in(msg.qos, msg.topic_id_type, msg.topic_id, msg.msg_id, msg.data, peer, session, msg.retain)

    def _publish_in(self, qos: int, tid_type: int, topic_id: int, msg_id: int, data: bytes, peer: Peer,
                    session: Session, retain: bool) -> None:
        """A QoS 0/1/2 publish from a connected client: map it and queue it for delivery."""
        stats = self.stats
        if tid_type == 1:      # predefined
            topic = self.predefined.get(topic_id)
        elif tid_type == 0:    # normal
            topic = session.topics.get(topic_id)
        else:                  # short
            topic = c.short_topic_name(topic_id)
        if topic is None:
            stats["invalid_topic"] += 1
            self._send(peer, c.Puback(topic_id, msg_id, _INVALID))
            return
        stats["publishes_in"] += 1
        if qos == 2:
            seen = session.qos2_in.get(msg_id)
            if seen is not None:
                stats["duplicates"] += 1
                if seen:
                    self._send(peer, c.Pubrec(msg_id))
                return
            if len(session.qos2_in) >= self.config.max_qos2_inflight:
                stats["congestion"] += 1
                self._send(peer, c.Puback(topic_id, msg_id, _CONGESTION))
                return
        elif qos == 1 and msg_id in session.qos1_pending:
            stats["duplicates"] += 1     # the PUBACK follows when the first copy is delivered
            return
        # Other clients subscribed to the topic get it too (device to device), and so do
        # later subscribers of a retained topic.
        forward = (topic, data, qos, retain) if (self.subscriptions.count or retain) else None
        batch = self.mapper.map(topic, data, session.client_id, self._now_wall)
        if batch is None:
            stats["unmapped_dropped"] += 1
            self._ack(session, peer, qos, topic_id, msg_id)
            self._forward(forward)
            return
        if len(self._pending) >= self._max_pending:
            self._refuse(peer, qos, topic_id, msg_id)
            return
        if qos == 2:
            session.qos2_in[msg_id] = False
        elif qos == 1:
            session.qos1_pending.add(msg_id)
        self._pending.append((batch, qos, session, peer, topic_id, msg_id, forward))

    def _bad_payload(self, topic: str, payload: bytes, client: str, device: str, error: Exception) -> None:
        self.stats["bad_payloads"] += 1
        if self._dead_letter is not None:
            # The client id is kept as the context: a rule's device may be `{client}` (`dlq replay`).
            self._dead_letter(bytes(payload), source=topic, error=f"{error} (client {client!r})", device=device or None,
                              at=self._now_wall, context=client)
            self._dead_letters_waiting = True

    def _forward(self, forward: tuple[str, bytes, int, bool] | None) -> None:
        if forward is None:
            return
        topic, data, qos, retain = forward
        if not retain and not self.subscriptions.match(topic):
            return                        # the common case: nobody listens to sensor data
        if self._valid_topic(topic):      # a short topic name may hold wildcard characters
            self.send_to_topic(topic, data, max(qos, 0), retain=retain)

    def _on_publish_anonymous(self, msg: c.Publish, peer: Peer, session: Session | None, now: float) -> None:
        cfg = self.config
        stats = self.stats
        if not cfg.allow_qos_minus1 or msg.topic_id_type is TopicIdType.NORMAL and session is None:
            stats["unknown_client"] += 1
            return
        if session is None:
            tokens = self._anon_tokens + (now - self._anon_at) * cfg.anonymous_rate_limit
            self._anon_tokens = min(tokens, cfg.anonymous_rate_limit) - 1.0
            self._anon_at = now
            if self._anon_tokens < 0:
                self._anon_tokens = 0.0
                stats["rate_limited"] += 1
                return
        topic = self._resolve(session, msg.topic_id_type, msg.topic_id)
        if topic is None:
            stats["invalid_topic"] += 1
            return
        stats["qos_minus1_in"] += 1
        client = session.client_id if session is not None else f"{peer[0][0]}:{peer[0][1]}"
        batch = self.mapper.map(topic, msg.data, client, self._now_wall)
        forward = (topic, msg.data, 0, msg.retain) if (self.subscriptions.count or msg.retain) else None
        if batch is None:
            stats["unmapped_dropped"] += 1
            self._forward(forward)
        elif len(self._pending) >= cfg.max_pending:
            stats["dropped_qos0"] += 1
        else:
            self._pending.append((batch, -1, None, None, 0, 0, forward))

    def _ack(self, s: Session | None, peer: Peer, qos: int, topic_id: int, msg_id: int) -> None:
        if qos == 1:
            # PUBACK "accepted", packed directly: it goes out once per QoS 1 publish.
            self._send_raw(peer, _PUBACK_OK.pack(7, c.MsgType.PUBACK, topic_id, msg_id, 0))
        elif qos == 2:
            if s is not None:
                s.qos2_in[msg_id] = True
            self._send(peer, c.Pubrec(msg_id))

    def _refuse(self, peer: Peer, qos: int, topic_id: int, msg_id: int) -> None:
        if qos >= 1:
            self.stats["congestion"] += 1
            self._send(peer, c.Puback(topic_id, msg_id, _CONGESTION))
        else:
            self.stats["dropped_qos0"] += 1

    def _on_pubrel(self, msg: c.Pubrel, peer: Peer, session: Session | None, now: float) -> None:
        if session is None:
            self._send(peer, c.Pubcomp(msg.msg_id))   # harmless: completes a flow we forgot
            return
        state = session.qos2_in.get(msg.msg_id)
        if state is False:
            return            # still being delivered; the client will send PUBREL again after PUBREC
        session.qos2_in.pop(msg.msg_id, None)
        self._send(peer, c.Pubcomp(msg.msg_id))

    async def _deliver_loop(self) -> None:
        pending = self._pending
        limit = self.config.delivery_batch
        stats = self.stats
        while True:
            if not pending:
                self._wake = trio.Event()
                await self._wake.wait()
                continue
            n = min(len(pending), limit)
            items = [pending.popleft() for _ in range(n)]
            batches = _merge([it[0] for it in items])
            ok = await self._deliver(batches)
            if ok and self._dead_letters_waiting and self._dead_letters_committed is not None:
                self._dead_letters_waiting = False
                await self._dead_letters_committed()    # acknowledged once their dead letters are stored
            if ok:
                stats["publishes_delivered"] += n
            for it in items:
                _, qos, s, peer, topic_id, msg_id, forward = it
                if ok and forward is not None:
                    self._forward(forward)
                if qos <= 0:
                    if not ok:
                        stats["dropped_qos0"] += 1
                    continue
                if qos == 1 and s is not None:
                    s.qos1_pending.discard(msg_id)
                if ok:
                    self._ack(s, peer, qos, topic_id, msg_id)
                else:
                    if qos == 2 and s is not None:
                        s.qos2_in.pop(msg_id, None)
                    self._refuse(peer, qos, topic_id, msg_id)

    # --- subscriptions -------------------------------------------------------------------
    def _on_subscribe(self, msg: c.Subscribe, peer: Peer, session: Session | None, now: float) -> None:
        if not self._connected(session, peer):
            return
        qos = max(msg.qos, 0)
        tid_type = msg.topic_id_type
        if tid_type is TopicIdType.NORMAL:
            topic = msg.topic_name
            if not self._valid_topic(topic, wildcards=True):
                self._send(peer, c.Suback(0, msg.msg_id, _NOT_SUPPORTED, qos))
                return
            if has_wildcards(topic):
                tid = 0
            else:
                tid = self._topic_id_for(session, topic)
                if tid is None:
                    self._send(peer, c.Suback(0, msg.msg_id, _CONGESTION, qos))
                    return
                session.known.add(tid)
        else:
            topic = self._resolve(session, tid_type, msg.topic_id)
            if topic is None:
                self._send(peer, c.Suback(msg.topic_id, msg.msg_id, _INVALID, qos))
                return
            if not self._valid_topic(topic, wildcards=True):   # a short name such as "a#"
                self._send(peer, c.Suback(0, msg.msg_id, _NOT_SUPPORTED, qos))
                return
            tid = msg.topic_id if tid_type is TopicIdType.PREDEFINED else 0
        if topic not in session.subs:
            if len(session.subs) >= self.config.max_subscriptions_per_client:
                self._send(peer, c.Suback(0, msg.msg_id, _CONGESTION, qos))
                return
        session.subs[topic] = qos
        self.subscriptions.add(topic, session.client_id, qos)
        self._send(peer, c.Suback(tid, msg.msg_id, _ACCEPTED, qos))
        for rtopic, item in list(self.retained.items()):
            if topic_matches(topic, rtopic):
                self._enqueue(session, Outgoing(rtopic, item.payload, min(item.qos, qos), True))

    def _on_unsubscribe(self, msg: c.Unsubscribe, peer: Peer, session: Session | None, now: float) -> None:
        if not self._connected(session, peer):
            return
        if msg.topic_id_type is TopicIdType.NORMAL:
            topic = msg.topic_name
        else:
            topic = self._resolve(session, msg.topic_id_type, msg.topic_id)
        if topic is not None and session.subs.pop(topic, None) is not None:
            self.subscriptions.remove(topic, session.client_id)
        self._send(peer, c.Unsuback(msg.msg_id))

    # --- messages to clients ---------------------------------------------------------------
    def send_to_topic(self, topic: str, payload: bytes, qos: int = 0, *, retain: bool = False,
                      on_done: Callable[[str, bool], None] | None = None) -> int:
        """Publish `payload` on `topic` to every client subscribed to it; returns how many.

        Sleeping clients get it when they wake (buffered, bounded); clients subscribed
        with a wildcard first get a REGISTER for the topic. QoS is the lower of `qos`
        and the subscription's. `on_done(client_id, ok)` is called per client when it has
        the message (acknowledged at QoS 1/2, sent at QoS 0) or it was given up.
        """
        if not self._valid_topic(topic):
            raise ValueError(f"send_to_topic: {topic!r} is not a valid topic name (no wildcards, "
                             f"1..{self.config.max_topic_length} characters)")
        if qos not in (0, 1, 2):
            raise ValueError(f"send_to_topic: qos must be 0, 1 or 2, got {qos!r}")
        payload = bytes(payload)
        if retain:
            if payload:
                if topic in self.retained or len(self.retained) < self.config.max_retained:
                    self.retained[topic] = Outgoing(topic, payload, qos, True)
            else:
                self.retained.pop(topic, None)
        n = 0
        for cid, granted in self.subscriptions.match(topic).items():
            s = self.sessions.get(cid)
            if s is None:
                continue
            n += 1
            done = None if on_done is None else (lambda ok, cid=s.client_id: on_done(cid, ok))
            self._enqueue(s, Outgoing(topic, payload, min(qos, granted), retain, done))
        return n

    def _enqueue(self, s: Session, item: Outgoing) -> None:
        if len(s.outq) >= self.config.max_buffered_per_client:
            # The oldest goes (for commands the newest matters most), but not one being registered.
            i = 1 if s.inflight is not None and s.inflight.kind == "register" and len(s.outq) > 1 else 0
            dropped = s.outq[i]
            del s.outq[i]
            _finish(dropped, False)
            self.stats["buffer_dropped"] += 1
        s.outq.append(item)
        self._pump(s)

    def _pump(self, s: Session) -> None:
        """Send from the client's buffer while nothing is awaiting an acknowledgement."""
        if s.state not in (State.ACTIVE, State.AWAKE):
            return
        now = trio.current_time()
        while s.inflight is None and s.outq:
            item = s.outq[0]
            tid_type, tid = self._outgoing_topic(s, item.topic)
            if tid is None:
                _finish(s.outq.popleft(), False)
                self.stats["delivery_failures"] += 1   # the client's topic table is full
                continue
            if tid_type is None:
                # The client does not know this topic yet: REGISTER it first (spec 6.10).
                mid = s.msg_id()
                wire = c.encode(c.Register(tid, mid, item.topic))
                s.inflight = _Inflight("register", mid, wire, now, item, tid)
                self._send_raw(s.peer, wire)
                return
            s.outq.popleft()
            mid = s.msg_id() if item.qos > 0 else 0
            wire = c.encode(c.Publish(tid, mid, item.payload, item.qos, tid_type, retain=item.retain))
            self._send_raw(s.peer, wire)
            if item.qos > 0:
                s.inflight = _Inflight("publish", mid, wire, now, item, tid)
            else:
                _finish(item, True)
        if s.state is State.AWAKE and s.inflight is None and not s.outq:
            # Everything buffered is out: PINGRESP sends the client back to sleep (spec 6.14).
            s.state = State.ASLEEP
            s.last_seen = now
            self._send(s.peer, c.Pingresp())

    def _outgoing_topic(self, s: Session, topic: str) -> tuple[TopicIdType | None, int | None]:
        tid = self._predefined_ids.get(topic)
        if tid is not None:
            return TopicIdType.PREDEFINED, tid
        if len(topic) == 2 and len(topic.encode()) == 2:
            return TopicIdType.SHORT, c.short_topic_id(topic)
        tid = s.ids.get(topic)
        if tid is not None and tid in s.known:
            return TopicIdType.NORMAL, tid
        return None, self._topic_id_for(s, topic)

    def _on_regack(self, msg: c.Regack, peer: Peer, session: Session | None, now: float) -> None:
        if session is None:
            return
        inf = session.inflight
        if inf is None or inf.kind != "register" or inf.msg_id != msg.msg_id:
            self.stats["unexpected"] += 1
            return
        session.inflight = None
        if msg.return_code == _ACCEPTED:
            session.known.add(inf.topic_id)
        else:
            # The client refused the topic: drop that message (if the buffer still holds it).
            if session.outq and session.outq[0] is inf.item:
                session.outq.popleft()
            _finish(inf.item, False)
            self.stats["delivery_failures"] += 1
        self._pump(session)

    def _on_puback(self, msg: c.Puback, peer: Peer, session: Session | None, now: float) -> None:
        if session is None:
            return
        inf = session.inflight
        if inf is None or inf.kind != "publish" or inf.msg_id != msg.msg_id:
            self.stats["unexpected"] += 1
            return
        session.inflight = None
        if msg.return_code == _INVALID and inf.topic_id in session.known:
            # The client forgot the topic id: register again and resend.
            session.known.discard(inf.topic_id)
            session.outq.appendleft(inf.item)
        elif msg.return_code != _ACCEPTED:
            self.stats["delivery_failures"] += 1
            _finish(inf.item, False)
        else:
            _finish(inf.item, True)
        self._pump(session)

    def _on_pubrec(self, msg: c.Pubrec, peer: Peer, session: Session | None, now: float) -> None:
        if session is None:
            return
        inf = session.inflight
        if inf is None or inf.msg_id != msg.msg_id or inf.kind not in ("publish", "pubrel"):
            self.stats["unexpected"] += 1
            return
        wire = c.encode(c.Pubrel(msg.msg_id))
        inf.kind, inf.wire, inf.sent_at, inf.retries = "pubrel", wire, trio.current_time(), 0
        self._send_raw(peer, wire)

    def _on_pubcomp(self, msg: c.Pubcomp, peer: Peer, session: Session | None, now: float) -> None:
        if session is None:
            return
        inf = session.inflight
        if inf is None or inf.kind != "pubrel" or inf.msg_id != msg.msg_id:
            self.stats["unexpected"] += 1
            return
        session.inflight = None
        _finish(inf.item, True)
        self._pump(session)

    # --- inspection ----------------------------------------------------------------------
    def diagnostics(self) -> dict[str, Any]:
        by_state = collections.Counter(s.state.value for s in self.sessions.values())
        return {
            "address": list(self.address) if self.address else None,
            "sessions": len(self.sessions), "by_state": dict(by_state),
            "pending_delivery": len(self._pending), "retained": len(self.retained),
            "subscriptions": self.subscriptions.count, "counters": dict(self.stats),
        }


def _requeue_inflight(s: Session) -> None:
    """The client went away mid-flow: what it has not acknowledged goes back to the front of
    its buffer (sent again with a fresh message id when it returns)."""
    inf = s.inflight
    s.inflight = None
    if inf is None:
        return
    if inf.kind == "publish":
        s.outq.appendleft(inf.item)
    elif inf.kind == "pubrel":
        _finish(inf.item, True)      # PUBREC came: the client has the message
    # "register": the message is still at the front of the buffer


def _give_up(s: Session) -> None:
    """The session ends: whoever waits for its buffered messages hears they were not delivered."""
    while s.outq:
        _finish(s.outq.popleft(), False)


def _merge(batches: Sequence[Batch]) -> list[Batch]:
    """One batch per device: fewer, larger batches for the pipeline (columns concatenated)."""
    if len(batches) <= 1:
        return list(batches)
    groups: dict[str, list[Batch]] = {}
    for b in batches:
        groups.setdefault(b.device, []).append(b)
    if len(groups) == len(batches):
        return list(batches)
    out = []
    for device, bs in groups.items():
        if len(bs) == 1:
            out.append(bs[0])
            continue
        points, values, stamps, quality = [], [], [], []
        any_q = any(b.quality is not None for b in bs)
        for b in bs:
            points.extend(b.points)
            values.extend(b.values)
            stamps.extend(b.timestamps)
            if any_q:
                quality.extend(b.quality if b.quality is not None else [0] * len(b))
        out.append(Batch(device, points, values, stamps, quality if any_q else None, bs[0].source))
    return out
