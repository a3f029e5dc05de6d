"""The few MQTT-SN v1.2 messages an update needs, and the update topics, sans IO.

A minimal copy on purpose: integrations cannot import each other, and a sensor
node's update agent is this small too. CONNECT/CONNACK, PUBLISH/PUBACK with
predefined topic ids, DISCONNECT; the one- and three-octet length forms.
"""

from __future__ import annotations

import struct

import attrs

CONNECT, CONNACK, PUBLISH, PUBACK, DISCONNECT = 0x04, 0x05, 0x0C, 0x0D, 0x18
RC_ACCEPTED, RC_CONGESTION, RC_INVALID_TOPIC, RC_NOT_SUPPORTED = 0, 1, 2, 3
TOPIC_PREDEFINED = 0b01
QOS1 = 0b0100000

# Predefined topic ids (both sides know them; no REGISTER round trips on a constrained link).
T_OFFER = 0x5501   # gateway -> node: signed envelope (JSON); node replies on T_REPLY
T_CHUNK = 0x5502   # gateway -> node: 4-octet offset + bytes; node answers PUBACK (0 stored, 3 wrong offset)
T_CMD = 0x5503     # gateway -> node: {"op": activate|health|commit|rollback|report}; reply on T_REPLY
T_REPLY = 0x5504   # node -> gateway: JSON answer, msg id echoes the request's
T_HELLO = 0x5505   # node -> gateway: JSON status at boot and after every change
T_CONFIG = 0x5506  # gateway -> node: {"version": n, "delta": {...}}; reply is the reported config


class WireError(ValueError):
    """A datagram is not one of the messages this module knows; says what and at which byte."""


@attrs.frozen(slots=True)
class Connect:
    client_id: str
    duration: int = 60


@attrs.frozen(slots=True)
class Connack:
    rc: int = RC_ACCEPTED


@attrs.frozen(slots=True)
class Publish:
    topic: int
    msg_id: int
    data: bytes
    qos1: bool = True


@attrs.frozen(slots=True)
class Puback:
    topic: int
    msg_id: int
    rc: int = RC_ACCEPTED


@attrs.frozen(slots=True)
class Disconnect:
    pass


def _frame(kind: int, body: bytes) -> bytes:
    n = len(body) + 2
    if n < 256:
        return bytes((n, kind)) + body
    n += 2
    if n > 0xFFFF:
        raise WireError(f"message of {n} octets is over the 65,535 MQTT-SN allows")
    return b"\x01" + struct.pack("!HB", n, kind) + body


def encode(msg) -> bytes:
    if isinstance(msg, Publish):
        flags = (QOS1 if msg.qos1 else 0) | TOPIC_PREDEFINED
        return _frame(PUBLISH, struct.pack("!BHH", flags, msg.topic, msg.msg_id) + msg.data)
    if isinstance(msg, Puback):
        return _frame(PUBACK, struct.pack("!HHB", msg.topic, msg.msg_id, msg.rc))
    if isinstance(msg, Connect):
        return _frame(CONNECT, struct.pack("!BBH", 0x04, 0x01, msg.duration) + msg.client_id.encode())
    if isinstance(msg, Connack):
        return _frame(CONNACK, bytes((msg.rc,)))
    if isinstance(msg, Disconnect):
        return _frame(DISCONNECT, b"")
    raise WireError(f"cannot encode {type(msg).__name__}")


def decode(datagram: bytes):
    if len(datagram) < 2:
        raise WireError(f"datagram of {len(datagram)} octets is too short (at byte 0)")
    if datagram[0] == 0x01:
        if len(datagram) < 4:
            raise WireError("three-octet length form cut short (at byte 1)")
        length, kind, start = struct.unpack_from("!H", datagram, 1)[0], datagram[3], 4
    else:
        length, kind, start = datagram[0], datagram[1], 2
    if length != len(datagram):
        raise WireError(f"length field says {length} octets, datagram has {len(datagram)} (at byte 0)")
    body = datagram[start:]
    try:
        if kind == PUBLISH:
            flags, topic, msg_id = struct.unpack_from("!BHH", body)
            return Publish(topic, msg_id, bytes(body[5:]), bool(flags & QOS1))
        if kind == PUBACK:
            return Puback(*struct.unpack_from("!HHB", body))
        if kind == CONNECT:
            _flags, _proto, duration = struct.unpack_from("!BBH", body)
            return Connect(body[4:].decode(), duration)
        if kind == CONNACK:
            return Connack(body[0])
        if kind == DISCONNECT:
            return Disconnect()
    except (struct.error, IndexError, UnicodeDecodeError) as exc:
        raise WireError(f"message type 0x{kind:02x} cut short or malformed ({exc}) (at byte {start})") from None
    raise WireError(f"message type 0x{kind:02x} is not used for updates (at byte {start - 1})")


def chunk_data(offset: int, data: bytes) -> bytes:
    return struct.pack("!I", offset) + data


def split_chunk(data: bytes) -> tuple[int, bytes]:
    if len(data) < 4:
        raise WireError("chunk shorter than its 4-octet offset (at byte 0)")
    return struct.unpack_from("!I", data)[0], data[4:]
