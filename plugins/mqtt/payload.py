"""Payload mapping: how one received message (topic + bytes) becomes readings.

Formats: `json` (paths to the values and an optional timestamp), `text` (one
number), `binary` (a declared layout of fixed-size fields) and `sitegate` (another
gateway's uplink, see envelope.py). Device and point names come from topic levels
(`factory/{zone}/{device}/data`). Pure functions: no MQTT, no trio.
"""

from __future__ import annotations

import datetime
import json
import math
import re
import string
import struct
from typing import Any, Literal

import attrs

from . import envelope


class MalformedPayload(ValueError):
    """The message cannot be turned into readings; the text says what and where."""


_BINARY_TYPES = {
    "int8": "b", "uint8": "B", "int16": "h", "uint16": "H", "int32": "i", "uint32": "I",
    "int64": "q", "uint64": "Q", "float32": "f", "float64": "d", "bool": "?",
}
_PATH_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def parse_path(path: str) -> tuple[str | int, ...]:
    """`data.values[0].v` -> ('data', 'values', 0, 'v'); raises ValueError on an empty or odd path."""
    parts: list[str | int] = []
    pos = 0
    while pos < len(path):
        if path[pos] == ".":
            pos += 1
            continue
        m = _PATH_PART.match(path, pos)
        if not m:
            raise ValueError(f"bad JSON path {path!r} at character {pos}")
        parts.append(m.group(1) if m.group(1) is not None else int(m.group(2)))
        pos = m.end()
    if not parts:
        raise ValueError(f"empty JSON path {path!r}")
    return tuple(parts)


def _lookup(doc: Any, path: tuple[str | int, ...], text: str) -> Any:
    cur = doc
    for part in path:
        try:
            cur = cur[part]
        except (KeyError, IndexError, TypeError):
            raise MalformedPayload(f"JSON path {text!r}: no {part!r} in the payload") from None
    return cur


@attrs.frozen
class Field:
    """One field of a binary layout."""

    name: str
    type: str = "float32"
    offset: int | None = None        # bytes from the start; default: right after the previous field
    scale: float = 1.0
    add: float = 0.0

    def __attrs_post_init__(self):
        if self.type not in _BINARY_TYPES:
            raise ValueError(f"type: expected one of {', '.join(_BINARY_TYPES)}, got {self.type!r}")


def _names(template: str | None) -> list[str]:
    if template is None:
        return []
    return [f for _, f, _, _ in string.Formatter().parse(template) if f]


@attrs.frozen
class PayloadMapping:
    """The config shape of a payload mapping (shared in spirit with the MQTT-SN adapter)."""

    topic: str | None = None          # names for the filter's levels: factory/{zone}/{device}/data
    format: Literal["json", "text", "binary", "sitegate"] = "json"
    device: str | None = None         # device name template; default {device} when the topic names it
    point: str | None = None          # point name template for one-value formats; default {point} or "value"
    value: str | None = None          # json: path to the value (one point)
    points: dict[str, str] = attrs.Factory(dict)   # json: point name -> path (several points)
    timestamp: str | None = None      # json: path to the timestamp; default: time of receipt
    timestamp_unit: Literal["s", "ms", "iso"] = "s"
    layout: list[Field] = attrs.Factory(list)      # binary: the fields in order
    byte_order: Literal["big", "little"] = "big"

    def __attrs_post_init__(self):
        if self.format not in ("json", "text", "binary", "sitegate"):
            raise ValueError(f"format: expected json, text, binary or sitegate, got {self.format!r}")
        if self.timestamp_unit not in ("s", "ms", "iso"):
            raise ValueError(f"timestamp_unit: expected s, ms or iso, got {self.timestamp_unit!r}")
        if self.byte_order not in ("big", "little"):
            raise ValueError(f"byte_order: expected big or little, got {self.byte_order!r}")
        topic_names = set(_names(self.topic))
        allowed = topic_names | {"entry"}
        for key in ("device", "point"):
            used = set(_names(getattr(self, key)))
            if used - allowed:
                raise ValueError(f"{key}: uses {', '.join(sorted(used - allowed))}, which the topic "
                                 f"{self.topic!r} does not name")
        for path in ([self.value] if self.value else []) + list(self.points.values()) + \
                ([self.timestamp] if self.timestamp else []):
            parse_path(path)
        if self.value and self.points:
            raise ValueError("value/points: give either value (one point) or points (several), not both")
        if self.format == "binary" and not self.layout:
            raise ValueError("layout: a binary payload needs its fields declared")
        if self.format != "binary" and self.layout:
            raise ValueError(f"layout: only used with format: binary (format is {self.format})")


@attrs.frozen(slots=True)
class Decoded:
    """Readings of one device decoded from one message."""

    device: str | None            # relative device name (None = the entry itself); absolute for sitegate
    points: list[str]
    values: list[Any]
    timestamps: list[float]
    quality: list[int] | None = None
    origin: envelope.Envelope | None = None   # the header of another sitegate's message


class Mapper:
    """A compiled PayloadMapping: `decode(topic, payload, received_at)` -> list of Decoded."""

    def __init__(self, mapping: PayloadMapping):
        self.m = mapping
        self.levels = mapping.topic.split("/") if mapping.topic else None
        names = set(_names(mapping.topic))
        self.device_t = mapping.device if mapping.device is not None else ("{device}" if "device" in names else None)
        self.point_t = mapping.point if mapping.point is not None else ("{point}" if "point" in names else "value")
        self.value_path = parse_path(mapping.value) if mapping.value else None
        self.point_paths = [(name, parse_path(p), p) for name, p in mapping.points.items()]
        self.ts_path = parse_path(mapping.timestamp) if mapping.timestamp else None
        if mapping.format == "binary":
            order = ">" if mapping.byte_order == "big" else "<"
            self.fields = []
            pos = 0
            for f in mapping.layout:
                off = f.offset if f.offset is not None else pos
                st = struct.Struct(order + _BINARY_TYPES[f.type])
                self.fields.append((f, off, st))
                pos = off + st.size
            self.min_size = max(off + st.size for _, off, st in self.fields)

    def names_from_topic(self, topic: str) -> dict[str, str]:
        if self.levels is None:
            return {}
        got = topic.split("/")
        out = {}
        for i, level in enumerate(self.levels):
            if level.startswith("{") and level.endswith("}"):
                if i >= len(got):
                    raise MalformedPayload(f"topic {topic!r} is shorter than {self.m.topic!r}")
                out[level[1:-1]] = got[i]
        return out

    def decode(self, topic: str, payload: bytes, received_at: float, entry_id: str = "") -> list[Decoded]:
        fmt = self.m.format
        if fmt == "sitegate":
            return [Decoded(e.device, e.points, e.values, e.timestamps, e.quality, e)
                    for e in envelope.decode(payload)]
        names = self.names_from_topic(topic)
        names["entry"] = entry_id
        device = self.device_t.format(**names) if self.device_t else None
        if fmt == "text":
            try:
                text = payload.decode("utf-8").strip()
                value: Any = float(text)
            except (UnicodeDecodeError, ValueError):
                raise MalformedPayload(f"expected a number as text, got {payload[:40]!r}") from None
            if value.is_integer() and re.fullmatch(r"[+-]?\d+", text):
                value = int(text)
            return [Decoded(device, [self.point_t.format(**names)], [value], [received_at])]
        if fmt == "binary":
            if len(payload) < self.min_size:
                raise MalformedPayload(f"binary payload of {len(payload)} bytes, the layout needs {self.min_size}")
            pts, vals = [], []
            for f, off, st in self.fields:
                v = st.unpack_from(payload, off)[0]
                if f.scale != 1.0 or f.add != 0.0:
                    v = v * f.scale + f.add
                pts.append(f.name)
                vals.append(v)
            return [Decoded(device, pts, vals, [received_at] * len(pts))]
        # json
        try:
            doc = json.loads(payload)
        except (UnicodeDecodeError, ValueError) as exc:
            raise MalformedPayload(f"not JSON: {exc}") from None
        ts = received_at
        if self.ts_path is not None:
            ts = self._timestamp(_lookup(doc, self.ts_path, self.m.timestamp or ""))
        if self.point_paths:
            pts = [n for n, _, _ in self.point_paths]
            vals = [self._value(_lookup(doc, p, text), text) for _, p, text in self.point_paths]
        else:
            if self.value_path is not None:
                raw = _lookup(doc, self.value_path, self.m.value or "")
            else:
                raw = doc
            pts = [self.point_t.format(**names)]
            vals = [self._value(raw, self.m.value or "(whole payload)")]
        return [Decoded(device, pts, vals, [ts] * len(pts))]

    @staticmethod
    def _value(raw: Any, where: str) -> Any:
        if isinstance(raw, bool) or isinstance(raw, int) or isinstance(raw, str):
            return raw
        if isinstance(raw, float):
            if not math.isfinite(raw):
                raise MalformedPayload(f"{where}: not a finite number: {raw!r}")
            return raw
        raise MalformedPayload(f"{where}: expected a number, boolean or string, got {type(raw).__name__}")

    def _timestamp(self, raw: Any) -> float:
        unit = self.m.timestamp_unit
        try:
            if unit == "iso":
                dt = datetime.datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
                if dt.tzinfo is None:
                    dt = dt.replace(tzinfo=datetime.timezone.utc)
                return dt.timestamp()
            if isinstance(raw, bool) or not isinstance(raw, (int, float)):
                raise ValueError
            return float(raw) / 1000.0 if unit == "ms" else float(raw)
        except (ValueError, TypeError):
            raise MalformedPayload(f"timestamp {self.m.timestamp!r}: expected {unit} timestamp, got {raw!r}") from None
