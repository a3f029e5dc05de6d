"""Payload mapping for the mqtt adapter: the core's one implementation (sitegate.payloads),
plus this integration's own format, `sitegate`: another gateway's uplink (envelope.py),
which keeps that gateway's device, timestamps and sequence numbers.
"""

from __future__ import annotations

from sitegate.payloads import Decoded, MalformedPayload, Mapper, MapperTable, PayloadMapping, StructField

from . import envelope

__all__ = ["DECODERS", "Decoded", "MalformedPayload", "Mapper", "MapperTable", "PayloadMapping", "StructField"]


def decode_sitegate(payload: bytes) -> list[Decoded]:
    return [Decoded(e.device, e.points, e.values, e.timestamps, e.quality, e) for e in envelope.decode(payload)]


DECODERS = {"sitegate": decode_sitegate}
