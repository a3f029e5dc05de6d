"""MQTT-SN v1.2 wire format: bytes to typed messages and back, sans IO.

No sockets and no trio here (h11/wsproto style): `decode` turns one datagram into
one message, `encode` does the reverse. The gateway (gateway.py) owns the I/O and
the protocol state; this module only knows the layout of each message.
"""

from __future__ import annotations

import enum
import struct
from typing import Callable, ClassVar

import attrs

__all__ = [
    "DecodeError", "EncodeError", "MsgType", "ReturnCode", "TopicIdType", "Message", "decode", "encode",
    "Advertise", "SearchGw", "GwInfo", "Connect", "Connack", "WillTopicReq", "WillTopic", "WillMsgReq",
    "WillMsg", "Register", "Regack", "Publish", "Puback", "Pubcomp", "Pubrec", "Pubrel", "Subscribe",
    "Suback", "Unsubscribe", "Unsuback", "Pingreq", "Pingresp", "Disconnect", "WillTopicUpd",
    "WillTopicResp", "WillMsgUpd", "WillMsgResp", "Encapsulated", "short_topic_id", "short_topic_name",
]

PROTOCOL_ID = 0x01
MAX_LENGTH = 0xFFFF          # the three-byte length form caps a message at 65,535 octets


class DecodeError(ValueError):
    """A datagram is not a valid MQTT-SN v1.2 message. `offset` is the byte where it went wrong."""

    def __init__(self, what: str, offset: int):
        super().__init__(f"{what} (at byte {offset})")
        self.what = what
        self.offset = offset


class EncodeError(ValueError):
    """A message cannot be encoded: a field is out of range (the message says which)."""


class MsgType(enum.IntEnum):
    ADVERTISE = 0x00
    SEARCHGW = 0x01
    GWINFO = 0x02
    CONNECT = 0x04
    CONNACK = 0x05
    WILLTOPICREQ = 0x06
    WILLTOPIC = 0x07
    WILLMSGREQ = 0x08
    WILLMSG = 0x09
    REGISTER = 0x0A
    REGACK = 0x0B
    PUBLISH = 0x0C
    PUBACK = 0x0D
    PUBCOMP = 0x0E
    PUBREC = 0x0F
    PUBREL = 0x10
    SUBSCRIBE = 0x12
    SUBACK = 0x13
    UNSUBSCRIBE = 0x14
    UNSUBACK = 0x15
    PINGREQ = 0x16
    PINGRESP = 0x17
    DISCONNECT = 0x18
    WILLTOPICUPD = 0x1A
    WILLTOPICRESP = 0x1B
    WILLMSGUPD = 0x1C
    WILLMSGRESP = 0x1D
    ENCAPSULATED = 0xFE


class ReturnCode(enum.IntEnum):
    ACCEPTED = 0x00
    CONGESTION = 0x01
    INVALID_TOPIC_ID = 0x02
    NOT_SUPPORTED = 0x03


class TopicIdType(enum.IntEnum):
    NORMAL = 0b00       # a topic id from REGISTER/REGACK (or a topic name, in SUBSCRIBE)
    PREDEFINED = 0b01   # an id both sides know from configuration
    SHORT = 0b10        # a two-character topic name carried in the topic id field


# Flags octet (spec 5.3.4): DUP | QoS(2) | Retain | Will | CleanSession | TopicIdType(2)
_DUP, _RETAIN, _WILL, _CLEAN = 0x80, 0x10, 0x08, 0x04
_QOS_TO_BITS = {0: 0x00, 1: 0x20, 2: 0x40, -1: 0x60}
_BITS_TO_QOS = (0, 1, 2, -1)


def _flags(dup=False, qos=0, retain=False, will=False, clean=False, tid=0) -> int:
    try:
        q = _QOS_TO_BITS[qos]
    except KeyError:
        raise EncodeError(f"qos: expected -1, 0, 1 or 2, got {qos!r}") from None
    return (_DUP if dup else 0) | q | (_RETAIN if retain else 0) | (_WILL if will else 0) | (_CLEAN if clean else 0) | int(tid)


def _tid(flags: int, off: int) -> TopicIdType:
    t = flags & 0x03
    if t == 0b11:
        raise DecodeError("topic id type 0b11 is reserved", off)
    return _TID[t]


_TID = (TopicIdType.NORMAL, TopicIdType.PREDEFINED, TopicIdType.SHORT)


def short_topic_id(name: str) -> int:
    """The topic id field value that carries a two-character short topic name."""
    raw = name.encode("utf-8")
    if len(raw) != 2:
        raise EncodeError(f"short topic name must be exactly 2 bytes, got {name!r}")
    return (raw[0] << 8) | raw[1]


def short_topic_name(topic_id: int) -> str:
    """The two-character topic name carried in a short topic id (latin-1, so every id has a name)."""
    return bytes(((topic_id >> 8) & 0xFF, topic_id & 0xFF)).decode("latin-1")


def _text(data: bytes, off: int, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(f"{what} is not valid UTF-8", off + exc.start) from None


# --- messages ---------------------------------------------------------------------------
# Each class knows its own body layout: `_body()` returns the octets after the type octet,
# `_parse(body, off)` reads them (off = where the body starts in the datagram, for errors).

class Message:
    """Base of every message; `TYPE` is the MsgType octet."""

    __slots__ = ()
    TYPE: ClassVar[MsgType]


_B = struct.Struct(">B")
_H = struct.Struct(">H")
_BH = struct.Struct(">BH")
_HH = struct.Struct(">HH")
_HHB = struct.Struct(">HHB")
_BHH = struct.Struct(">BHH")
_BBH = struct.Struct(">BBH")
_BHHB = struct.Struct(">BHHB")


def _exact(body: bytes, n: int, off: int, name: str) -> None:
    if len(body) != n:
        raise DecodeError(f"{name} body must be {n} octets, got {len(body)}", off)


def _at_least(body: bytes, n: int, off: int, name: str) -> None:
    if len(body) < n:
        raise DecodeError(f"{name} body must be at least {n} octets, got {len(body)}", off + len(body))


def _u8(v: int, what: str) -> int:
    if not (isinstance(v, int) and 0 <= v <= 0xFF):
        raise EncodeError(f"{what}: expected 0..255, got {v!r}")
    return v


def _u16(v: int, what: str) -> int:
    if not (isinstance(v, int) and 0 <= v <= 0xFFFF):
        raise EncodeError(f"{what}: expected 0..65535, got {v!r}")
    return v


@attrs.frozen(slots=True)
class Advertise(Message):
    TYPE: ClassVar[MsgType] = MsgType.ADVERTISE
    gw_id: int
    duration: int       # seconds until the next ADVERTISE

    def _body(self) -> bytes:
        return _BH.pack(_u8(self.gw_id, "gw_id"), _u16(self.duration, "duration"))

    @classmethod
    def _parse(cls, b: bytes, off: int) -> "Advertise":
        _exact(b, 3, off, "ADVERTISE")
        return cls(*_BH.unpack(b))


@attrs.frozen(slots=True)
class SearchGw(Message):
    TYPE: ClassVar[MsgType] = MsgType.SEARCHGW
    radius: int

    def _body(self) -> bytes:
        return bytes((_u8(self.radius, "radius"),))

    @classmethod
    def _parse(cls, b: bytes, off: int) -> "SearchGw":
        _exact(b, 1, off, "SEARCHGW")
        return cls(b[0])


@attrs.frozen(slots=True)
class GwInfo(Message):
    TYPE: ClassVar[MsgType] = MsgType.GWINFO
    gw_id: int
    gw_address: bytes = b""   # only present when a client answers on behalf of a gateway

    def _body(self) -> bytes:
        return bytes((_u8(self.gw_id, "gw_id"),)) + bytes(self.gw_address)

    @classmethod
    def _parse(cls, b: bytes, off: int) -> "GwInfo":
        _at_least(b, 1, off, "GWINFO")
        return cls(b[0], bytes(b[1:]))


@attrs.frozen(slots=True)
class Connect(Message):
    TYPE: ClassVar[MsgType] = MsgType.CONNECT
    client_id: str
    duration: int                 # keep-alive, seconds
    clean_session: bool = True
    will: bool = False
    protocol_id: int = PROTOCOL_ID

    def _body(self) -> bytes:
        return _BBH.pack(_flags(will=self.will, clean=self.clean_session), _u8(self.protocol_id, "protocol_id"),
                         _u16(self.duration, "duration")) + self.client_id.encode("utf-8")

    @classmethod
    def _parse(cls, b: bytes, off: int) -> "Connect":
        _at_least(b, 4, off, "CONNECT")
        flags, pid, duration = _BBH.unpack_from(b)
        return cls(_text(b[4:], off + 4, "CONNECT client id"), duration, bool(flags & _CLEAN), bool(flags & _WILL), pid)


def _return_code(v: int) -> ReturnCode | int:
    # Unknown return codes are kept as ints: a peer may use a newer code; the gateway decides.
    try:
        return ReturnCode(v)
    except ValueError:
        return v


@attrs.frozen(slots=True)
class _RcOnly(Message):
    return_code: int = ReturnCode.ACCEPTED

    def _body(self) -> bytes:
        return bytes((_u8(int(self.return_code), "return_code"),))

    @classmethod
    def _parse(cls, b: bytes, off: int):
        _exact(b, 1, off, cls.TYPE.name)
        return cls(_return_code(b[0]))


@attrs.frozen(slots=True)
class Connack(_RcOnly):
    TYPE: ClassVar[MsgType] = MsgType.CONNACK


@attrs.frozen(slots=True)
class WillTopicResp(_RcOnly):
    TYPE: ClassVar[MsgType] = MsgType.WILLTOPICRESP


@attrs.frozen(slots=True)
class WillMsgResp(_RcOnly):
    TYPE: ClassVar[MsgType] = MsgType.WILLMSGRESP


@attrs.frozen(slots=True)
class _Empty(Message):
    def _body(self) -> bytes:
        return b""

    @classmethod
    def _parse(cls, b: bytes, off: int):
        _exact(b, 0, off, cls.TYPE.name)
        return cls()


@attrs.frozen(slots=True)
class WillTopicReq(_Empty):
    TYPE: ClassVar[MsgType] = MsgType.WILLTOPICREQ


@attrs.frozen(slots=True)
class WillMsgReq(_Empty):
    TYPE: ClassVar[MsgType] = MsgType.WILLMSGREQ


@attrs.frozen(slots=True)
class Pingresp(_Empty):
    TYPE: ClassVar[MsgType] = MsgType.PINGRESP


@attrs.frozen(slots=True)
class _WillTopicBase(Message):
    """WILLTOPIC / WILLTOPICUPD. An empty message (topic None) deletes the will."""

    topic: str | None = None
    qos: int = 0
    retain: bool = False

    def _body(self) -> bytes:
        if self.topic is None:
            return b""
        return bytes((_flags(qos=self.qos, retain=self.retain),)) + self.topic.encode("utf-8")

    @classmethod
    def _parse(cls, b: bytes, off: int):
        if not b:
            return cls()
        f = b[0]
        return cls(_text(b[1:], off + 1, f"{cls.TYPE.name} topic"), _BITS_TO_QOS[(f >> 5) & 3], bool(f & _RETAIN))


@attrs.frozen(slots=True)
class WillTopic(_WillTopicBase):
    TYPE: ClassVar[MsgType] = MsgType.WILLTOPIC


@attrs.frozen(slots=True)
class WillTopicUpd(_WillTopicBase):
    TYPE: ClassVar[MsgType] = MsgType.WILLTOPICUPD


@attrs.frozen(slots=True)
class _WillMsgBase(Message):
    message: bytes = b""

    def _body(self) -> bytes:
        return bytes(self.message)

    @classmethod
    def _parse(cls, b: bytes, off: int):
        return cls(bytes(b))


@attrs.frozen(slots=True)
class WillMsg(_WillMsgBase):
    TYPE: ClassVar[MsgType] = MsgType.WILLMSG


@attrs.frozen(slots=True)
class WillMsgUpd(_WillMsgBase):
    TYPE: ClassVar[MsgType] = MsgType.WILLMSGUPD


@attrs.frozen(slots=True)
class Register(Message):
    TYPE: ClassVar[MsgType] = MsgType.REGISTER
    topic_id: int       # 0 when sent by a client; the assigned id when sent by the gateway
    msg_id: int
    topic_name: str

    def _body(self) -> bytes:
        return _HH.pack(_u16(self.topic_id, "topic_id"), _u16(self.msg_id, "msg_id")) + self.topic_name.encode("utf-8")

    @classmethod
    def _parse(cls, b: bytes, off: int) -> "Register":
        _at_least(b, 4, off, "REGISTER")
        tid, mid = _HH.unpack_from(b)
        return cls(tid, mid, _text(b[4:], off + 4, "REGISTER topic name"))


@attrs.frozen(slots=True)
class _IdIdRc(Message):
    topic_id: int
    msg_id: int
    return_code: int = ReturnCode.ACCEPTED

    def _body(self) -> bytes:
        return _HHB.pack(_u16(self.topic_id, "topic_id"), _u16(self.msg_id, "msg_id"),
                         _u8(int(self.return_code), "return_code"))

    @classmethod
    def _parse(cls, b: bytes, off: int):
        _exact(b, 5, off, cls.TYPE.name)
        tid, mid, rc = _HHB.unpack(b)
        return cls(tid, mid, _return_code(rc))


@attrs.frozen(slots=True)
class Regack(_IdIdRc):
    TYPE: ClassVar[MsgType] = MsgType.REGACK


@attrs.frozen(slots=True)
class Puback(_IdIdRc):
    TYPE: ClassVar[MsgType] = MsgType.PUBACK


@attrs.frozen(slots=True)
class Publish(Message):
    TYPE: ClassVar[MsgType] = MsgType.PUBLISH
    topic_id: int
    msg_id: int
    data: bytes
    qos: int = 0
    topic_id_type: TopicIdType = TopicIdType.NORMAL
    dup: bool = False
    retain: bool = False

    def _body(self) -> bytes:
        return _BHH.pack(_flags(self.dup, self.qos, self.retain, tid=self.topic_id_type),
                         _u16(self.topic_id, "topic_id"), _u16(self.msg_id, "msg_id")) + bytes(self.data)

    @classmethod
    def _parse(cls, b: bytes, off: int) -> "Publish":
        if len(b) < 5:
            raise DecodeError(f"PUBLISH body must be at least 5 octets, got {len(b)}", off + len(b))
        f, tid, mid = _BHH.unpack_from(b)
        t = f & 3
        if t == 3:
            raise DecodeError("topic id type 0b11 is reserved", off)
        return cls(tid, mid, bytes(b[5:]), _BITS_TO_QOS[(f >> 5) & 3], _TID[t], bool(f & _DUP), bool(f & _RETAIN))


@attrs.frozen(slots=True)
class _MsgIdOnly(Message):
    msg_id: int

    def _body(self) -> bytes:
        return _H.pack(_u16(self.msg_id, "msg_id"))

    @classmethod
    def _parse(cls, b: bytes, off: int):
        _exact(b, 2, off, cls.TYPE.name)
        return cls(_H.unpack(b)[0])


@attrs.frozen(slots=True)
class Pubcomp(_MsgIdOnly):
    TYPE: ClassVar[MsgType] = MsgType.PUBCOMP


@attrs.frozen(slots=True)
class Pubrec(_MsgIdOnly):
    TYPE: ClassVar[MsgType] = MsgType.PUBREC


@attrs.frozen(slots=True)
class Pubrel(_MsgIdOnly):
    TYPE: ClassVar[MsgType] = MsgType.PUBREL


@attrs.frozen(slots=True)
class Unsuback(_MsgIdOnly):
    TYPE: ClassVar[MsgType] = MsgType.UNSUBACK


@attrs.frozen(slots=True)
class _SubBase(Message):
    """SUBSCRIBE / UNSUBSCRIBE: a topic name (NORMAL, may hold wildcards) or a topic id
    (PREDEFINED, or SHORT with the two characters packed as by `short_topic_id`)."""

    msg_id: int
    topic_name: str | None = None
    topic_id: int = 0
    topic_id_type: TopicIdType = TopicIdType.NORMAL
    qos: int = 0
    dup: bool = False

    def _body(self) -> bytes:
        head = _BH.pack(_flags(self.dup, self.qos, tid=self.topic_id_type), _u16(self.msg_id, "msg_id"))
        if self.topic_id_type == TopicIdType.NORMAL:
            if self.topic_name is None:
                raise EncodeError(f"{self.TYPE.name}: topic_name is required with topic id type NORMAL")
            return head + self.topic_name.encode("utf-8")
        return head + _H.pack(_u16(self.topic_id, "topic_id"))

    @classmethod
    def _parse(cls, b: bytes, off: int):
        _at_least(b, 3, off, cls.TYPE.name)
        f, mid = _BH.unpack_from(b)
        tid_type = _tid(f, off)
        qos, dup = _BITS_TO_QOS[(f >> 5) & 3], bool(f & _DUP)
        if tid_type == TopicIdType.NORMAL:
            return cls(mid, _text(b[3:], off + 3, f"{cls.TYPE.name} topic name"), 0, tid_type, qos, dup)
        _exact(b, 5, off, f"{cls.TYPE.name} with a topic id")
        return cls(mid, None, _H.unpack_from(b, 3)[0], tid_type, qos, dup)


@attrs.frozen(slots=True)
class Subscribe(_SubBase):
    TYPE: ClassVar[MsgType] = MsgType.SUBSCRIBE


@attrs.frozen(slots=True)
class Unsubscribe(_SubBase):
    TYPE: ClassVar[MsgType] = MsgType.UNSUBSCRIBE


@attrs.frozen(slots=True)
class Suback(Message):
    TYPE: ClassVar[MsgType] = MsgType.SUBACK
    topic_id: int
    msg_id: int
    return_code: int = ReturnCode.ACCEPTED
    qos: int = 0          # the granted QoS

    def _body(self) -> bytes:
        return _BHHB.pack(_flags(qos=self.qos), _u16(self.topic_id, "topic_id"), _u16(self.msg_id, "msg_id"),
                          _u8(int(self.return_code), "return_code"))

    @classmethod
    def _parse(cls, b: bytes, off: int) -> "Suback":
        _exact(b, 6, off, "SUBACK")
        f, tid, mid, rc = _BHHB.unpack(b)
        return cls(tid, mid, _return_code(rc), _BITS_TO_QOS[(f >> 5) & 3])


@attrs.frozen(slots=True)
class Pingreq(Message):
    TYPE: ClassVar[MsgType] = MsgType.PINGREQ
    client_id: str | None = None   # set by a sleeping client waking up to fetch its messages

    def _body(self) -> bytes:
        return b"" if self.client_id is None else self.client_id.encode("utf-8")

    @classmethod
    def _parse(cls, b: bytes, off: int) -> "Pingreq":
        return cls(_text(b, off, "PINGREQ client id") if b else None)


@attrs.frozen(slots=True)
class Disconnect(Message):
    TYPE: ClassVar[MsgType] = MsgType.DISCONNECT
    duration: int | None = None    # present: the client goes to sleep for this many seconds

    def _body(self) -> bytes:
        return b"" if self.duration is None else _H.pack(_u16(self.duration, "duration"))

    @classmethod
    def _parse(cls, b: bytes, off: int) -> "Disconnect":
        if not b:
            return cls()
        _exact(b, 2, off, "DISCONNECT")
        return cls(_H.unpack(b)[0])


@attrs.frozen(slots=True)
class Encapsulated(Message):
    """Forwarder encapsulation (0xFE): a message relayed for the wireless node `node_id`."""

    TYPE: ClassVar[MsgType] = MsgType.ENCAPSULATED
    radius: int
    node_id: bytes
    message: Message

    def _body(self) -> bytes:  # pragma: no cover - encode() handles this type itself
        raise NotImplementedError


# --- framing ----------------------------------------------------------------------------

_CLASSES: dict[int, type] = {c.TYPE: c for c in (
    Advertise, SearchGw, GwInfo, Connect, Connack, WillTopicReq, WillTopic, WillMsgReq, WillMsg, Register,
    Regack, Publish, Puback, Pubcomp, Pubrec, Pubrel, Subscribe, Suback, Unsubscribe, Unsuback, Pingreq,
    Pingresp, Disconnect, WillTopicUpd, WillTopicResp, WillMsgUpd, WillMsgResp)}
_PARSERS: dict[int, Callable[[bytes, int], Message]] = {t: c._parse for t, c in _CLASSES.items()}
MESSAGE_TYPES: tuple[type, ...] = tuple(_CLASSES.values()) + (Encapsulated,)


def encode(message: Message) -> bytes:
    """The datagram for `message`: the one-octet length form when the message fits in
    255 octets, the three-octet form (0x01, length) otherwise."""
    if type(message) is Encapsulated:
        node = bytes(message.node_id)
        head_len = 3 + len(node)
        if head_len > 0xFF:
            raise EncodeError(f"ENCAPSULATED: node_id is {len(node)} octets, at most 252 fit")
        if isinstance(message.message, Encapsulated):
            raise EncodeError("ENCAPSULATED: an encapsulated message cannot contain another one")
        return bytes((head_len, MsgType.ENCAPSULATED, _u8(message.radius, "radius") & 0x03)) + node + encode(message.message)
    try:
        body = message._body()
    except struct.error as exc:   # pragma: no cover - _u8/_u16 check first
        raise EncodeError(f"{type(message).__name__}: {exc}") from None
    n = len(body) + 2
    if n <= 0xFF:
        return bytes((n, message.TYPE)) + body
    n += 2
    if n > MAX_LENGTH:
        raise EncodeError(f"{type(message).__name__}: {n} octets, more than the {MAX_LENGTH} MQTT-SN allows")
    return b"\x01" + _H.pack(n) + bytes((message.TYPE,)) + body


def decode(data: bytes) -> Message:
    """The message in one datagram. Raises DecodeError (and nothing else) for bad input."""
    if type(data) is not bytes:
        data = bytes(data)
    n = len(data)
    if n >= 7 and data[0] == n and data[1] == 0x0C and data[2] & 3 != 3:
        # PUBLISH in the one-octet form is nearly all of the traffic: decoded inline.
        f = data[2]
        tid, mid = _HH.unpack_from(data, 3)
        return Publish(tid, mid, data[7:], _BITS_TO_QOS[(f >> 5) & 3], _TID[f & 3], f & 0x80 != 0, f & 0x10 != 0)
    if n < 2:
        raise DecodeError(f"datagram of {n} octets is shorter than any message", n)
    length = data[0]
    if length == 0x01:
        if n < 4:
            raise DecodeError(f"three-octet length form needs 4 octets, got {n}", n)
        length = (data[1] << 8) | data[2]
        start = 3
        if length < 4:
            raise DecodeError(f"three-octet length {length} is shorter than its own header", 1)
    elif length == 0:
        raise DecodeError("length 0 is not a valid message length", 0)
    else:
        start = 1
    mtype = data[start]
    if mtype == MsgType.ENCAPSULATED:
        return _decode_encapsulated(data)
    if length != n:
        raise DecodeError(f"length field says {length} octets, datagram has {n}", 0)
    parse = _PARSERS.get(mtype)
    if parse is None:
        raise DecodeError(f"unknown message type 0x{mtype:02X}", start)
    return parse(data[start + 1:], start + 1)


def _decode_encapsulated(data: bytes) -> Encapsulated:
    # The encapsulation header's length octet covers only itself, the type, Ctrl and the node id.
    head_len = data[0]
    if head_len < 3:
        raise DecodeError(f"encapsulation header length {head_len} is shorter than 3", 0)
    if head_len > len(data):
        raise DecodeError(f"encapsulation header says {head_len} octets, datagram has {len(data)}", 0)
    inner = data[head_len:]
    if inner and inner[0] != 0x01 and len(inner) > 1 and inner[1] == MsgType.ENCAPSULATED:
        raise DecodeError("an encapsulated message cannot contain another encapsulation", head_len + 1)
    if len(inner) >= 4 and inner[0] == 0x01 and inner[3] == MsgType.ENCAPSULATED:
        raise DecodeError("an encapsulated message cannot contain another encapsulation", head_len + 3)
    try:
        msg = decode(inner)
    except DecodeError as exc:
        raise DecodeError(f"encapsulated message: {exc.what}", head_len + exc.offset) from None
    return Encapsulated(data[2] & 0x03, bytes(data[3:head_len]), msg)
