"""Payload mapping: how one received message (topic + payload bytes) becomes readings.

One implementation for every adapter that receives topic-addressed messages (the
`mqtt` adapter, the `mqttsn` gateway, third-party ones):

* `PayloadMapping`, the config vocabulary (attrs, structured from the site file):
  formats `number` (numeric text), `text`, `json` (`value` / `values` paths,
  `timestamp` path in `s`, `ms` or `iso`) and `struct` (`fields` in `byte_order`);
  `device` and `point` templates made of topic levels by index (`{1}`, `{-1}`) or by
  name through a `topic` pattern (`factory/{zone}/{device}/data`), `{topic}`, `{entry}`
  and, where the adapter knows who published, `{client}`.
* `validate_filter` / `topic_matches`: MQTT topic filters (`+`, `#`, `$`-topics).
* `Mapper`: a compiled mapping, `decode(topic, payload, received_at, client)` returns
  `Decoded` readings or raises one `MalformedPayload` saying what and where, carrying
  what could be read (`partial`, bad values marked BAD_DECODE) for adapters that keep
  bad payloads visible as bad-quality readings.
* `MapperTable`: the first mapping whose filter matches a topic, cached per topic.

Adapter-specific formats (the mqtt adapter's `sitegate` uplink format) plug in as
`decoders={"name": fn}`, with the config class listing the name in `formats`.
Pure functions: no I/O, no trio.
"""

from __future__ import annotations

import datetime
import json
import math
import re
import struct
from typing import Any, Callable, ClassVar, Sequence

import attrs

from .model import Quality

__all__ = [
    "BAD", "FIELD_TYPES", "FORMATS", "Decoded", "MalformedPayload", "Mapper", "MapperTable", "PayloadMapping",
    "StructField", "filter_of", "has_wildcards", "parse_path", "topic_matches", "validate_filter",
]

BAD = int(Quality.BAD_DECODE)
FORMATS = ("number", "text", "json", "struct")
FIELD_TYPES = {
    "int8": "b", "uint8": "B", "int16": "h", "uint16": "H", "int32": "i", "uint32": "I",
    "int64": "q", "uint64": "Q", "float32": "f", "float64": "d", "bool": "?", "pad": "x",
}
TIMESTAMP_UNITS = ("s", "ms", "iso")
_PATH_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_NAMED_LEVEL = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_LEVEL_INDEX = re.compile(r"-?\d+")


class MalformedPayload(ValueError):
    """The message cannot be turned into readings; the text says what and where.

    `partial` is what could be read (a `Decoded` whose unreadable values are None with
    quality BAD_DECODE), or None when not even the device and points are known.
    """

    def __init__(self, message: str, *, partial: "Decoded | None" = None):
        super().__init__(message)
        self.partial = partial


@attrs.define(slots=True, eq=True)
class Decoded:
    """Readings of one device decoded from one message."""

    device: str | None            # as the mapping named it (None: the adapter's entry itself)
    points: list[str]
    values: list[Any]
    timestamps: list[float]
    quality: list[int] | None = None
    origin: Any = None            # what an adapter-specific decoder wants to keep (e.g. another sitegate's header)


# --- topic filters --------------------------------------------------------------------

def validate_filter(topic: str, *, allow_wildcards: bool = True) -> str:
    """Check an MQTT topic filter; returns it or raises ValueError saying what is wrong."""
    if not topic:
        raise ValueError("topic must not be empty")
    levels = topic.split("/")
    for i, level in enumerate(levels):
        if level in ("+", "#"):
            if not allow_wildcards:
                raise ValueError(f"topic {topic!r}: wildcards are not allowed here")
            if level == "#" and i != len(levels) - 1:
                raise ValueError(f"topic {topic!r}: '#' must be the last level")
        elif "+" in level or "#" in level:
            raise ValueError(f"topic {topic!r}: a wildcard must fill a whole level (level {i}: {level!r})")
    return topic


def has_wildcards(topic: str) -> bool:
    return "+" in topic or "#" in topic


def topic_matches(filter_: str, topic: str) -> bool:
    """MQTT matching: `+` is one level, `#` the rest (also none); `$`-topics only match explicitly."""
    if filter_ == topic:
        return True
    f = filter_.split("/")
    t = topic.split("/")
    if t[0].startswith("$") and f[0] in ("+", "#"):
        return False
    for i, level in enumerate(f):
        if level == "#":
            return True
        if i >= len(t):
            return False
        if level != "+" and level != t[i]:
            return False
    return len(f) == len(t)


def named_levels(pattern: str | None) -> dict[str, int]:
    """`factory/{zone}/{device}/data` -> {"zone": 1, "device": 2}; a name must fill a whole level."""
    if not pattern:
        return {}
    out: dict[str, int] = {}
    for i, level in enumerate(pattern.split("/")):
        m = _NAMED_LEVEL.fullmatch(level)
        if m:
            if m.group(1) in out:
                raise ValueError(f"topic: {pattern!r} names two levels {m.group(1)!r}")
            out[m.group(1)] = i
        elif "{" in level or "}" in level:
            raise ValueError(f"topic: {pattern!r}: a name must fill a whole level, like factory/{{zone}}/data")
    return out


def filter_of(pattern: str) -> str:
    """The MQTT filter of a topic pattern: named levels match any one level (`+`)."""
    return "/".join("+" if _NAMED_LEVEL.fullmatch(level) else level for level in pattern.split("/"))


# --- JSON paths ---------------------------------------------------------------------------

def parse_path(path: str) -> tuple[str | int, ...]:
    """`data.values[0].v` -> ('data', 'values', 0, 'v'); `values.0` works on lists too."""
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


def _getter(text: str) -> Callable[[Any], Any]:
    """A compiled path: doc -> value, or MalformedPayload naming the path and the missing part."""
    if not text:
        return lambda doc: doc
    path = parse_path(text)

    def missing(part: Any) -> MalformedPayload:
        return MalformedPayload(f"JSON path {text!r}: no {part!r} in the payload")

    if len(path) == 1 and isinstance(path[0], str) and not path[0].isdigit():
        key = path[0]

        def get_one(doc: Any) -> Any:          # the common case: a top-level key
            try:
                return doc[key]
            except (KeyError, IndexError, TypeError):
                raise missing(key) from None
        return get_one

    def get(doc: Any) -> Any:
        cur = doc
        for part in path:
            if isinstance(cur, list) and isinstance(part, str) and part.isdigit():
                part = int(part)
            elif isinstance(cur, dict) and isinstance(part, int):
                part = str(part)
            try:
                cur = cur[part]
            except (KeyError, IndexError, TypeError):
                raise missing(part) from None
        return cur
    return get


# --- the config vocabulary -------------------------------------------------------------------

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


class _Template:
    """A device/point name: literal text and placeholders, rendered from one topic."""

    __slots__ = ("source", "parts", "uses_client")

    def __init__(self, source: str, named: dict[str, int], allowed: frozenset[str]):
        self.source = source
        self.parts: list[tuple[str, Any]] = []
        pos = 0
        for m in _PLACEHOLDER.finditer(source):
            if m.start() > pos:
                self.parts.append(("lit", source[pos:m.start()]))
            key = m.group(1)
            if _LEVEL_INDEX.fullmatch(key):
                self.parts.append(("level", int(key)))
            elif key in named:
                self.parts.append(("level", named[key]))
            elif key in allowed:
                self.parts.append((key, None))
            else:
                known = ", ".join(f"{{{k}}}" for k in sorted(allowed))
                raise ValueError(f"template {source!r}: unknown placeholder {{{key}}}; use a topic level such as "
                                 f"{{1}} or {{-1}}, {known}, or a name from topic: ({', '.join(named) or 'none'})")
            pos = m.end()
        if pos < len(source):
            self.parts.append(("lit", source[pos:]))
        self.uses_client = any(kind == "client" for kind, _ in self.parts)

    def render(self, topic: str, levels: list[str], entry: str, client: str) -> str:
        out = []
        for kind, arg in self.parts:
            if kind == "lit":
                out.append(arg)
            elif kind == "level":
                if not -len(levels) <= arg < len(levels):
                    raise MalformedPayload(f"topic {topic!r} has no level {arg}")
                out.append(levels[arg])
            elif kind == "client":
                out.append(client)
            elif kind == "entry":
                out.append(entry)
            else:
                out.append(topic)
        return "".join(out)


@attrs.frozen
class PayloadMapping:
    """How the messages of some topics become readings: the keys a site file writes.

    Adapters subclass it to add their own keys (the topic filter, QoS); class
    attributes say which formats and placeholders they offer and the device name
    when neither `device` nor a `{device}` topic level gives one.
    """

    topic: str | None = None          # topic levels by name: factory/{zone}/{device}/data
    format: str = "number"
    device: str | None = None         # template; default {device} if topic names it, else default_device
    point: str | None = None          # template; default {point} if topic names it, else {-1} (the last level)
    value: str = ""                   # json: path to the value of `point` ("" = the whole document)
    values: dict[str, str] = attrs.Factory(dict)   # json: point name -> path (several points)
    timestamp: str | None = None      # json: path to the time; struct: the field holding it. Default: receipt
    timestamp_unit: str = "s"         # s or ms since the epoch, or iso (JSON text such as 2024-01-01T00:00:00Z)
    byte_order: str = "little"        # struct: little or big
    fields: list[StructField] = attrs.Factory(list)   # struct: the layout, in order

    formats: ClassVar[tuple[str, ...]] = FORMATS
    placeholders: ClassVar[frozenset[str]] = frozenset({"topic", "entry"})
    default_device: ClassVar[str | None] = None      # None: readings belong to the entry itself

    def __attrs_post_init__(self):
        self.check()

    def check(self) -> None:
        """Raise ValueError naming the key of the first problem."""
        formats = type(self).formats
        if self.format not in formats:
            raise ValueError(f"format: expected one of {', '.join(formats)}, got {self.format!r}")
        if self.timestamp_unit not in TIMESTAMP_UNITS:
            raise ValueError(f"timestamp_unit: expected s, ms or iso, got {self.timestamp_unit!r}")
        if self.byte_order not in ("big", "little"):
            raise ValueError(f"byte_order: expected little or big, got {self.byte_order!r}")
        named = named_levels(self.topic)
        if self.topic is not None:
            try:
                validate_filter(filter_of(self.topic))
            except ValueError as exc:
                raise ValueError(f"topic: {exc}") from None
        for key in ("device", "point"):
            template = getattr(self, key)
            if template is not None:
                try:
                    _Template(template, named, type(self).placeholders)
                except ValueError as exc:
                    raise ValueError(f"{key}: {exc}") from None
        for key, path in [("value", self.value)] + [(f"values.{k}", p) for k, p in self.values.items()]:
            if path or key != "value":
                try:
                    parse_path(path)
                except ValueError as exc:
                    raise ValueError(f"{key}: {exc}") from None
        if self.value and self.values:
            raise ValueError("value/values: give either value (one point) or values (several), not both")
        if self.format == "json" and self.timestamp:
            try:
                parse_path(self.timestamp)
            except ValueError as exc:
                raise ValueError(f"timestamp: {exc}") from None
        if self.format == "struct":
            names = [f.name for f in self.fields if f.type != "pad"]
            if not names:
                raise ValueError("fields: a struct payload needs its fields declared")
            if len(set(names)) != len(names):
                raise ValueError(f"fields: duplicate field names in {names}")
            if self.timestamp is not None and self.timestamp not in names:
                raise ValueError(f"timestamp: no field named {self.timestamp!r} in fields")
            if self.timestamp is not None and self.timestamp_unit == "iso":
                raise ValueError("timestamp_unit: iso is for JSON text; a struct field holds s or ms")
        elif self.fields:
            raise ValueError(f"fields: only used with format: struct (format is {self.format})")


# --- the compiled mapper -----------------------------------------------------------------------

Decoder = Callable[[bytes], "list[Decoded]"]
Columns = tuple  # (points, values, timestamps, quality or None) of one device


class Mapper:
    """A compiled PayloadMapping: `decode(topic, payload, received_at, client)` -> list of Decoded.

    Templates are parsed, paths split and the struct layout compiled once; the device
    and point names of a topic are cached (bounded), so the hot path is one dict
    lookup and the payload's parsing. `entry` fills `{entry}`; `decoders` adds the
    adapter's own formats (fn(payload) -> list of Decoded, raising MalformedPayload).
    """

    def __init__(self, mapping: PayloadMapping, *, entry: str = "", decoders: dict[str, Decoder] | None = None,
                 cache_size: int = 4096):
        self.mapping = m = mapping
        self.entry = entry
        self.cache_size = cache_size
        allowed = type(mapping).placeholders
        named = named_levels(mapping.topic)
        device = mapping.device if mapping.device is not None else \
            ("{device}" if "device" in named else type(mapping).default_device)
        point = mapping.point if mapping.point is not None else ("{point}" if "point" in named else "{-1}")
        self.device_t = _Template(device, named, allowed) if device is not None else None
        self.point_t = _Template(point, named, allowed)
        self._by_client = bool((self.device_t and self.device_t.uses_client) or self.point_t.uses_client)
        self._names: dict[Any, tuple[str | None, str]] = {}
        self._custom: Decoder | None = None
        fmt = m.format
        if fmt in FORMATS:
            self._decode = self.read = getattr(self, "_" + fmt)   # type: ignore[method-assign]
        elif decoders and fmt in decoders:
            self._custom = decoders[fmt]
        else:
            raise ValueError(f"format {fmt!r}: this adapter has no decoder for it")
        if fmt == "json":
            self._value = _getter(m.value) if not m.values else None
            self._values = [(name, _getter(p), p) for name, p in m.values.items()]
            self._ts = _getter(m.timestamp) if m.timestamp else None
        if fmt == "struct":
            order = "<" if m.byte_order == "little" else ">"
            code = "".join(f"{f.size}x" if f.type == "pad" else FIELD_TYPES[f.type] for f in m.fields)
            self._layout = struct.Struct(order + code)
            kept = [f for f in m.fields if f.type != "pad"]
            self._fields = [f.name for f in kept]
            self._scales = [(f.scale, f.offset) for f in kept]
            self._scaled = any(sc != 1.0 or off != 0.0 for sc, off in self._scales)
            self._ts_index = self._fields.index(m.timestamp) if m.timestamp else None
            if self._ts_index is None:
                self._points = self._fields
            else:
                self._points = self._fields[:self._ts_index] + self._fields[self._ts_index + 1:]
        self._ms = m.timestamp_unit == "ms"
        self._iso = m.timestamp_unit == "iso"

    # --- names ----------------------------------------------------------------------
    def names(self, topic: str, client: str = "") -> tuple[str | None, str]:
        """(device, point) of a message on `topic` (from `client`); MalformedPayload if the topic lacks a level."""
        key = (topic, client) if self._by_client else topic
        got = self._names.get(key)
        if got is None:
            levels = topic.split("/")
            entry = self.entry
            device = self.device_t.render(topic, levels, entry, client) if self.device_t is not None else None
            got = (device, self.point_t.render(topic, levels, entry, client))
            if len(self._names) >= self.cache_size:
                self._names.clear()       # bounded: a flood of distinct topics costs renders, not memory
            self._names[key] = got
        return got

    def decode(self, topic: str, payload: bytes, received_at: float, client: str = "") -> list[Decoded]:
        """The readings in one message, or MalformedPayload saying what is wrong (and `partial`)."""
        if self._custom is not None:
            return self._custom(payload)
        device, point = self.names(topic, client)
        points, values, timestamps, quality = self._decode(device, point, payload, received_at)
        return [Decoded(device, points, values, timestamps, quality)]

    def read(self, device: str | None, point: str, payload: bytes, received_at: float) -> Columns:
        """`decode` for an adapter that keeps the names of its topics itself (from `names`), as columns
        (points, values, timestamps, quality or None); built-in formats only. MalformedPayload as decode.
        (Replaced per instance by the format's own method, one call less on the hot path.)"""
        return self._decode(device, point, payload, received_at)

    # --- formats -----------------------------------------------------------------------
    @staticmethod
    def _bad(message: str, device: str | None, points: list[str], at: float) -> MalformedPayload:
        n = len(points)
        return MalformedPayload(message, partial=Decoded(device, list(points), [None] * n, [at] * n, [BAD] * n))

    def _number(self, device: str | None, point: str, payload: bytes, at: float) -> Columns:
        # int() and float() read ASCII bytes directly; "21" stays an int, "21.0" a float.
        try:
            v: Any = float(payload) if b"." in payload else int(payload)
        except (ValueError, TypeError):
            try:
                v = float(payload)          # 1e3
            except (ValueError, TypeError):
                v = None
        if v is None or b"_" in payload:
            raise self._bad(f"expected a number as text, got {bytes(payload[:40])!r}", device, [point], at)
        if type(v) is float and v - v != 0.0:
            raise self._bad(f"not a finite number: {bytes(payload[:40])!r}", device, [point], at)
        return [point], [v], [at], None

    def _text(self, device: str | None, point: str, payload: bytes, at: float) -> Columns:
        try:
            return [point], [bytes(payload).decode("utf-8")], [at], None
        except UnicodeDecodeError:
            raise self._bad(f"not UTF-8 text: {bytes(payload[:40])!r}", device, [point], at) from None

    def _json(self, device: str | None, point: str, payload: bytes, at: float) -> Columns:
        pairs = self._values
        try:
            doc = json.loads(payload)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise self._bad(f"not JSON: {exc}", device, [n for n, _, _ in pairs] or [point], at) from None
        try:
            ts = at if self._ts is None else self._timestamp(self._ts(doc))
            if pairs:
                points = [name for name, _, _ in pairs]
                values = [_check(get(doc), text) for _, get, text in pairs]
            else:
                points = [point]
                values = [_check(self._value(doc), self.mapping.value or "(whole payload)")]
        except MalformedPayload as first:
            raise self._json_partial(first, doc, device, point, at) from None
        return points, values, [ts] * len(points), None

    def _json_partial(self, first: MalformedPayload, doc: Any, device: str | None, point: str,
                      at: float) -> MalformedPayload:
        """The slow path of a bad JSON message: every value that can be read, the rest BAD."""
        try:
            ts = at if self._ts is None else self._timestamp(self._ts(doc))
        except MalformedPayload:
            ts = at
        items = [(n, g, t) for n, g, t in self._values] or \
            [(point, self._value, self.mapping.value or "(whole payload)")]
        points, values, quality = [], [], []
        for name, get, text in items:
            try:
                values.append(_check(get(doc), text))
                quality.append(0)
            except MalformedPayload:
                values.append(None)
                quality.append(BAD)
            points.append(name)
        first.partial = Decoded(device, points, values, [ts] * len(points), quality if any(quality) else None)
        return first

    def _struct(self, device: str | None, point: str, payload: bytes, at: float) -> Columns:
        layout = self._layout
        if len(payload) != layout.size:
            raise self._bad(f"struct payload of {len(payload)} bytes, the fields take {layout.size}",
                            device, self._points, at)
        raw = layout.unpack(payload)
        if self._scaled:
            values = [r * sc + off if (sc != 1.0 or off != 0.0) else r for r, (sc, off) in zip(raw, self._scales)]
        else:
            values = list(raw)
        i = self._ts_index
        if i is None:
            return list(self._fields), values, [at] * len(values), None
        del values[i]
        points = list(self._points)
        try:
            ts = self._timestamp(raw[i])
        except MalformedPayload as exc:
            exc.partial = Decoded(device, points, values, [at] * len(points))
            raise
        return points, values, [ts] * len(points), None

    def _timestamp(self, raw: Any) -> float:
        try:
            if self._iso:
                dt = datetime.datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
                if dt.tzinfo is None:
                    dt = dt.replace(tzinfo=datetime.timezone.utc)
                ts = dt.timestamp()
            elif isinstance(raw, bool) or not isinstance(raw, (int, float)):
                raise ValueError
            else:
                ts = raw / 1000.0 if self._ms else float(raw)
            if not (ts > 0.0 and math.isfinite(ts)):
                raise ValueError
            return ts
        except (ValueError, TypeError, OverflowError):
            m = self.mapping
            raise MalformedPayload(f"timestamp {m.timestamp!r}: expected a time after 1970 in "
                                   f"{m.timestamp_unit}, got {raw!r}") from None


def _check(raw: Any, where: str) -> Any:
    """A JSON value as a reading's value: numbers (finite), booleans and strings."""
    t = type(raw)
    if t is int or t is str or t is bool:
        return raw
    if t is float:
        if raw - raw == 0.0:
            return raw
        raise MalformedPayload(f"{where}: not a finite number: {raw!r}")
    raise MalformedPayload(f"{where}: expected a number, boolean or string, got "
                           f"{'null' if raw is None else 'an object' if t is dict else 'a list' if t is list else t.__name__}")


class MapperTable:
    """The first mapper whose filter matches a topic (None: no mapping), cached per topic, bounded."""

    def __init__(self, mappers: Sequence[tuple[str, Mapper]], *, cache_size: int = 4096):
        self.mappers = list(mappers)
        self.cache_size = cache_size
        self._cache: dict[str, Mapper | None] = {}

    def lookup(self, topic: str) -> Mapper | None:
        try:
            return self._cache[topic]
        except KeyError:
            pass
        found = next((m for f, m in self.mappers if topic_matches(f, topic)), None)
        if len(self._cache) >= self.cache_size:
            self._cache.clear()       # bounded: a flood of distinct topics costs lookups, not memory
        self._cache[topic] = found
        return found
