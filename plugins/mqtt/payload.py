"""Payload mapping: how one received message (topic + bytes) becomes readings.

The same config vocabulary as the MQTT-SN adapter's topic rules (plugins/mqttsn/payload.py):
formats `number`, `text`, `json` (`value`/`values` paths, `timestamp`) and `struct`
(`fields` in `byte_order`); names from topic levels, by index (`{1}`, `{-1}`) or by name
through a `topic:` pattern (`factory/{zone}/{device}/data`). Plus `sitegate`: another
gateway's uplink (envelope.py). Pure functions: no MQTT, no trio.
"""

from __future__ import annotations

import datetime
import json
import math
import re
import struct
from typing import Any, Literal

import attrs

from . import envelope


class MalformedPayload(ValueError):
    """The message cannot be turned into readings; the text says what and where."""


FORMATS = ("number", "text", "json", "struct", "sitegate")
FIELD_TYPES = {
    "int8": "b", "uint8": "B", "int16": "h", "uint16": "H", "int32": "i", "uint32": "I",
    "int64": "q", "uint64": "Q", "float32": "f", "float64": "d", "bool": "?", "pad": "x",
}
_PATH_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


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
        if isinstance(cur, list) and isinstance(part, str) and part.isdigit():
            part = int(part)          # "values.0" as well as "values[0]"
        try:
            cur = cur[part]
        except (KeyError, IndexError, TypeError):
            raise MalformedPayload(f"JSON path {text!r}: no {part!r} in the payload") from None
    return cur


@attrs.frozen
class StructField:
    """One field of a binary layout: value = raw * scale + offset. `pad` skips `size` octets."""

    name: str = ""
    type: str = "float32"
    scale: float = 1.0
    offset: float = 0.0
    size: int = 1             # for type pad only

    def __attrs_post_init__(self):
        if self.type not in FIELD_TYPES:
            raise ValueError(f"type: expected one of {', '.join(FIELD_TYPES)}, got {self.type!r}")
        if self.type == "pad" and self.size < 1:
            raise ValueError(f"size: a pad field needs at least 1 octet, got {self.size}")
        if self.type != "pad" and not self.name:
            raise ValueError("name: every field but pad needs a name")


def _placeholders(template: str | None) -> list[str]:
    return _PLACEHOLDER.findall(template) if template else []


class _Template:
    """`{N}` is topic level N (negative from the end), `{name}` a level named by the `topic:` pattern."""

    def __init__(self, source: str, named: dict[str, int]):
        self.source = source
        self.parts: list[tuple[str, Any]] = []
        pos = 0
        for m in _PLACEHOLDER.finditer(source):
            if m.start() > pos:
                self.parts.append(("lit", source[pos:m.start()]))
            key = m.group(1)
            if re.fullmatch(r"-?\d+", key):
                self.parts.append(("level", int(key)))
            elif key == "entry":
                self.parts.append(("entry", None))
            elif key in named:
                self.parts.append(("level", named[key]))
            else:
                raise ValueError(f"template {source!r}: unknown placeholder {{{key}}}; use a topic level such as "
                                 f"{{1}} or {{-1}}, {{entry}}, or a name from topic: ({', '.join(named) or 'none'})")
            pos = m.end()
        if pos < len(source):
            self.parts.append(("lit", source[pos:]))

    def render(self, levels: list[str], entry: str) -> str:
        out = []
        for kind, arg in self.parts:
            if kind == "lit":
                out.append(arg)
            elif kind == "entry":
                out.append(entry)
            elif -len(levels) <= arg < len(levels):
                out.append(levels[arg])
            else:
                raise MalformedPayload(f"topic {'/'.join(levels)!r} has no level {arg}")
        return "".join(out)


def _named_levels(topic: str | None) -> dict[str, int]:
    if not topic:
        return {}
    out = {}
    for i, level in enumerate(topic.split("/")):
        m = re.fullmatch(r"\{([A-Za-z_][A-Za-z0-9_]*)\}", level)
        if m:
            out[m.group(1)] = i
        elif "{" in level or "}" in level:
            raise ValueError(f"topic: {topic!r}: a name must fill a whole level, like factory/{{zone}}/data")
    return out


@attrs.frozen
class PayloadMapping:
    """The config shape of a payload mapping, the same keys as the MQTT-SN adapter's topic rules."""

    topic: str | None = None          # names for the filter's levels: factory/{zone}/{device}/data
    format: Literal["number", "text", "json", "struct", "sitegate"] = "number"
    device: str | None = None         # template; default {device} when topic: names it, else the entry itself
    point: str | None = None          # template; default {point} when topic: names it, else {-1} (last level)
    value: str = ""                   # json: path to the value of `point` ("" = the whole document)
    values: dict[str, str] = attrs.Factory(dict)   # json: point name -> path (several points)
    timestamp: str | None = None      # json: path to the time; struct: the field holding it. Default: receipt
    timestamp_unit: Literal["s", "ms", "iso"] = "s"
    byte_order: Literal["little", "big"] = "little"
    fields: list[StructField] = attrs.Factory(list)   # struct: the layout, in order

    def __attrs_post_init__(self):
        if self.format not in FORMATS:
            raise ValueError(f"format: expected one of {', '.join(FORMATS)}, got {self.format!r}")
        if self.timestamp_unit not in ("s", "ms", "iso"):
            raise ValueError(f"timestamp_unit: expected s, ms or iso, got {self.timestamp_unit!r}")
        if self.byte_order not in ("big", "little"):
            raise ValueError(f"byte_order: expected little or big, got {self.byte_order!r}")
        named = _named_levels(self.topic)
        for key in ("device", "point"):
            template = getattr(self, key)
            if template is not None:
                try:
                    _Template(template, named)
                except ValueError as exc:
                    raise ValueError(f"{key}: {exc}") from None
        for path in ([self.value] if self.value else []) + list(self.values.values()):
            parse_path(path)
        if self.value and self.values:
            raise ValueError("value/values: give either value (one point) or values (several), not both")
        if self.format == "json" and self.timestamp:
            parse_path(self.timestamp)
        if self.format == "struct":
            names = [f.name for f in self.fields if f.type != "pad"]
            if not names:
                raise ValueError("fields: a struct payload needs its fields declared")
            if len(set(names)) != len(names):
                raise ValueError(f"fields: duplicate field names in {names}")
            if self.timestamp is not None and self.timestamp not in names:
                raise ValueError(f"timestamp: no field named {self.timestamp!r} in fields")
        elif self.fields:
            raise ValueError(f"fields: only used with format: struct (format is {self.format})")


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
    """A compiled PayloadMapping: `decode(topic, payload, received_at, entry_id)` -> list of Decoded."""

    def __init__(self, mapping: PayloadMapping):
        self.m = mapping
        named = _named_levels(mapping.topic)
        device = mapping.device if mapping.device is not None else ("{device}" if "device" in named else None)
        point = mapping.point if mapping.point is not None else ("{point}" if "point" in named else "{-1}")
        self.device_t = _Template(device, named) if device is not None else None
        self.point_t = _Template(point, named)
        self.value_path = parse_path(mapping.value) if mapping.value else None
        self.value_paths = [(name, parse_path(p), p) for name, p in mapping.values.items()]
        self.ts_path = parse_path(mapping.timestamp) if mapping.timestamp and mapping.format == "json" else None
        if mapping.format == "struct":
            order = "<" if mapping.byte_order == "little" else ">"
            code = "".join(f"{f.size}x" if f.type == "pad" else FIELD_TYPES[f.type] for f in mapping.fields)
            self.layout = struct.Struct(order + code)
            kept = [f for f in mapping.fields if f.type != "pad"]
            self.names = [f.name for f in kept]
            self.scales = [(f.scale, f.offset) for f in kept]
            self.ts_index = self.names.index(mapping.timestamp) if mapping.timestamp else None

    def decode(self, topic: str, payload: bytes, received_at: float, entry_id: str = "") -> list[Decoded]:
        fmt = self.m.format
        if fmt == "sitegate":
            return [Decoded(e.device, e.points, e.values, e.timestamps, e.quality, e)
                    for e in envelope.decode(payload)]
        levels = topic.split("/")
        device = self.device_t.render(levels, entry_id) if self.device_t is not None else None
        if fmt == "number":
            try:
                text = payload.decode("ascii").strip()
                value: Any = int(text) if re.fullmatch(r"[+-]?\d+", text) else float(text)
            except (UnicodeDecodeError, ValueError):
                raise MalformedPayload(f"expected a number as text, got {bytes(payload[:40])!r}") from None
            if isinstance(value, float) and not math.isfinite(value):
                raise MalformedPayload(f"not a finite number: {text!r}")
            return [Decoded(device, [self.point_t.render(levels, entry_id)], [value], [received_at])]
        if fmt == "text":
            try:
                value = payload.decode("utf-8")
            except UnicodeDecodeError:
                raise MalformedPayload(f"not UTF-8 text: {bytes(payload[:40])!r}") from None
            return [Decoded(device, [self.point_t.render(levels, entry_id)], [value], [received_at])]
        if fmt == "struct":
            if len(payload) != self.layout.size:
                raise MalformedPayload(f"struct payload of {len(payload)} bytes, the fields take {self.layout.size}")
            raw = self.layout.unpack(payload)
            vals = [r * sc + off if (sc != 1.0 or off != 0.0) else r for r, (sc, off) in zip(raw, self.scales)]
            pts = list(self.names)
            ts = received_at
            i = self.ts_index
            if i is not None:
                ts = self._timestamp(raw[i])
                del pts[i], vals[i]
            return [Decoded(device, pts, vals, [ts] * len(pts))]
        # json
        try:
            doc = json.loads(payload)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise MalformedPayload(f"not JSON: {exc}") from None
        ts = received_at
        if self.ts_path is not None:
            ts = self._timestamp(_lookup(doc, self.ts_path, self.m.timestamp or ""))
        if self.value_paths:
            pts = [n for n, _, _ in self.value_paths]
            vals = [self._value(_lookup(doc, p, text), text) for _, p, text in self.value_paths]
        else:
            raw = _lookup(doc, self.value_path, self.m.value) if self.value_path is not None else doc
            pts = [self.point_t.render(levels, entry_id)]
            vals = [self._value(raw, self.m.value or "(whole payload)")]
        return [Decoded(device, pts, vals, [ts] * len(pts))]

    @staticmethod
    def _value(raw: Any, where: str) -> Any:
        if isinstance(raw, (bool, int, str)):
            return raw
        if isinstance(raw, float):
            if not math.isfinite(raw):
                raise MalformedPayload(f"{where}: not a finite number: {raw!r}")
            return raw
        raise MalformedPayload(f"{where}: expected a number, boolean or string, got "
                               f"{'null' if raw is None else type(raw).__name__}")

    def _timestamp(self, raw: Any) -> float:
        unit = self.m.timestamp_unit
        try:
            if unit == "iso":
                dt = datetime.datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
                if dt.tzinfo is None:
                    dt = dt.replace(tzinfo=datetime.timezone.utc)
                return dt.timestamp()
            if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(raw):
                raise ValueError
            return float(raw) / 1000.0 if unit == "ms" else float(raw)
        except (ValueError, TypeError, OverflowError):
            raise MalformedPayload(f"timestamp {self.m.timestamp!r}: expected a time in {unit}, got {raw!r}") from None
