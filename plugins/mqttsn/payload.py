"""Payload mapping: (topic, payload bytes) to a Batch of readings, per topic rule.

Protocol-neutral on purpose (no MQTT-SN here): the MQTT-SN gateway (gateway.py) uses
it today and the MQTT adapter can share it. A rule matches a topic filter (MQTT `+`/`#`
wildcards) and says how to read the payload: a numeric text, JSON with paths to the
values and an optional timestamp, or a binary struct layout.
"""

from __future__ import annotations

import json
import math
import re
import struct
from typing import Any, Sequence

import attrs

from sitegate.model import Batch, Quality

FORMATS = ("number", "text", "json", "struct")
# Struct field types and their struct codes.
FIELD_TYPES = {
    "int8": "b", "uint8": "B", "int16": "h", "uint16": "H", "int32": "i", "uint32": "I",
    "int64": "q", "uint64": "Q", "float32": "f", "float64": "d", "bool": "?", "pad": "x",
}
_BAD = int(Quality.BAD_DECODE)
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


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


@attrs.frozen
class StructField:
    """One field of a binary payload layout. `pad` fields skip `size` octets."""

    name: str
    type: str = "float32"
    scale: float = 1.0        # value = raw * scale + offset
    offset: float = 0.0
    size: int = 1             # for type pad only

    def __attrs_post_init__(self):
        if self.type not in FIELD_TYPES:
            raise ValueError(f"type: expected one of {', '.join(FIELD_TYPES)}, got {self.type!r}")
        if self.type == "pad" and self.size < 1:
            raise ValueError(f"size: a pad field needs at least 1 octet, got {self.size}")


class _Template:
    """A device/point name template: `{client}`, `{topic}`, or `{N}` for topic level N (negative from the end)."""

    __slots__ = ("source", "_parts")

    def __init__(self, source: str):
        self.source = source
        # Each part: ("lit", text) | ("level", n) | ("client",) | ("topic",)
        parts: list[tuple] = []
        pos = 0
        for m in _PLACEHOLDER.finditer(source):
            if m.start() > pos:
                parts.append(("lit", source[pos:m.start()]))
            key = m.group(1)
            if key in ("client", "topic"):
                parts.append((key,))
            elif re.fullmatch(r"-?\d+", key):
                parts.append(("level", int(key)))
            else:
                raise ValueError(f"template {source!r}: unknown placeholder {{{key}}}; "
                                 "use {client}, {topic} or a topic level such as {1} or {-1}")
            pos = m.end()
        if pos < len(source):
            parts.append(("lit", source[pos:]))
        self._parts = parts

    def render(self, topic: str, levels: list[str], client: str) -> str:
        out = []
        for p in self._parts:
            kind = p[0]
            if kind == "lit":
                out.append(p[1])
            elif kind == "level":
                n = p[1]
                out.append(levels[n] if -len(levels) <= n < len(levels) else "")
            elif kind == "client":
                out.append(client)
            else:
                out.append(topic)
        return "".join(out)


def _path(path: str) -> list[str | int]:
    if not path:
        return []
    return [int(k) if re.fullmatch(r"\d+", k) else k for k in path.split(".")]


def _lookup(doc: Any, path: list[str | int]) -> Any:
    for key in path:
        if isinstance(key, int) and isinstance(doc, list):
            doc = doc[key]
        elif isinstance(doc, dict):
            doc = doc[str(key)]
        else:
            raise KeyError(key)
    return doc


@attrs.frozen
class TopicRule:
    """How the payloads of the topics matching `topic` become readings.

    `device` and `point` are templates: `{client}` (who published), `{topic}`, `{N}` (topic
    level N, 0-based; `{-1}` is the last). JSON: `value` is the path to the value of `point`
    (empty: the whole document), or `values` maps several point names to paths; `timestamp`
    is the path to a time in `timestamp_unit` (s or ms) since the epoch. Struct: `fields` in
    `byte_order` (little or big), a field named by `timestamp` is used as the time.
    """

    topic: str
    format: str = "number"
    device: str = "{client}"
    point: str = "{-1}"
    value: str = ""
    values: dict[str, str] = attrs.Factory(dict)
    timestamp: str | None = None
    timestamp_unit: str = "s"
    byte_order: str = "little"
    fields: list[StructField] = attrs.Factory(list)

    def __attrs_post_init__(self):
        validate_filter(self.topic)
        if self.format not in FORMATS:
            raise ValueError(f"format: expected one of {', '.join(FORMATS)}, got {self.format!r}")
        if self.timestamp_unit not in ("s", "ms"):
            raise ValueError(f"timestamp_unit: expected s or ms, got {self.timestamp_unit!r}")
        if self.byte_order not in ("little", "big"):
            raise ValueError(f"byte_order: expected little or big, got {self.byte_order!r}")
        _Template(self.device)
        _Template(self.point)
        if self.format == "struct":
            if not [f for f in self.fields if f.type != "pad"]:
                raise ValueError("fields: a struct layout needs at least one field")
            names = [f.name for f in self.fields if f.type != "pad"]
            if len(set(names)) != len(names):
                raise ValueError(f"fields: duplicate field names in {names}")
            if self.timestamp is not None and self.timestamp not in names:
                raise ValueError(f"timestamp: no field named {self.timestamp!r} in the layout")
        elif self.fields:
            raise ValueError(f"fields: only used with format struct, not {self.format}")


class _Compiled:
    """A rule prepared once: templates parsed, struct compiled, JSON paths split."""

    def __init__(self, rule: TopicRule):
        self.rule = rule
        self.device = _Template(rule.device)
        self.point = _Template(rule.point)
        self.decode = {"number": self._number, "text": self._text, "json": self._json,
                       "struct": self._struct}[rule.format]
        if rule.format == "struct":
            order = "<" if rule.byte_order == "little" else ">"
            code = "".join(f"{f.size}x" if f.type == "pad" else FIELD_TYPES[f.type] for f in rule.fields)
            self._layout = struct.Struct(order + code)
            kept = [f for f in rule.fields if f.type != "pad"]
            self._names = [f.name for f in kept]
            self._scale = [(f.scale, f.offset) for f in kept]
            self._ts_index = self._names.index(rule.timestamp) if rule.timestamp else None
        if rule.format == "json":
            self._value_path = _path(rule.value)
            self._values = [(name, _path(p)) for name, p in rule.values.items()]
            self._ts_path = _path(rule.timestamp) if rule.timestamp else None

    def _ts(self, raw: Any, now: float) -> float:
        try:
            ts = float(raw)
        except (TypeError, ValueError, OverflowError):
            return now
        if self.rule.timestamp_unit == "ms":
            ts /= 1000.0
        return ts if math.isfinite(ts) and ts > 0 else now

    def _number(self, payload: bytes, point: str, now: float):
        # int() and float() read ASCII bytes directly; "21" stays an int, "21.0" a float.
        try:
            v: Any = float(payload) if b"." in payload else int(payload)
        except ValueError:
            try:
                v = float(payload)      # 1e3, inf, nan
            except ValueError:
                return [point], [None], now, [_BAD]
        return [point], [v], now, None

    def _text(self, payload: bytes, point: str, now: float):
        try:
            return [point], [payload.decode("utf-8")], now, None
        except UnicodeDecodeError:
            return [point], [None], now, [_BAD]

    def _json(self, payload: bytes, point: str, now: float):
        pairs = self._values or [(point, self._value_path)]
        try:
            doc = json.loads(payload)
        except (ValueError, RecursionError):
            return [n for n, _ in pairs], [None] * len(pairs), now, [_BAD] * len(pairs)
        ts = now
        if self._ts_path is not None:
            try:
                ts = self._ts(_lookup(doc, self._ts_path), now)
            except (KeyError, IndexError, TypeError):
                pass
        names, values, quality = [], [], []
        for name, path in pairs:
            try:
                v = _lookup(doc, path)
                if isinstance(v, (dict, list)):
                    raise TypeError(name)
                values.append(v)
                quality.append(0)
            except (KeyError, IndexError, TypeError):
                values.append(None)
                quality.append(_BAD)
            names.append(name)
        return names, values, ts, (quality if any(quality) else None)

    def _struct(self, payload: bytes, point: str, now: float):
        names = self._names
        try:
            raw = self._layout.unpack(payload)
        except struct.error:
            i = self._ts_index
            names = names if i is None else names[:i] + names[i + 1:]
            return list(names), [None] * len(names), now, [_BAD] * len(names)
        values = [r * s + o if (s != 1.0 or o != 0.0) else r for r, (s, o) in zip(raw, self._scale)]
        ts = now
        i = self._ts_index
        if i is not None:
            ts = self._ts(raw[i], now)
            return names[:i] + names[i + 1:], values[:i] + values[i + 1:], ts, None
        return list(names), values, ts, None


class PayloadMapper:
    """Maps (topic, payload, client) to a Batch using the first matching rule.

    Topics without a rule follow `unmapped`: `auto` (a number if the payload is one,
    else its text), or `drop` (returns None). Rule lookups are cached per topic, in a
    bounded cache, so the hot path is one dict lookup.
    """

    def __init__(self, rules: Sequence[TopicRule], *, unmapped: str = "auto", device_prefix: str = "",
                 source: str = "", cache_size: int = 4096):
        if unmapped not in ("auto", "drop"):
            raise ValueError(f"unmapped: expected auto or drop, got {unmapped!r}")
        self.rules = [_Compiled(r) for r in rules]
        self.unmapped = unmapped
        self.device_prefix = device_prefix
        self.source = source
        self._auto = _Compiled(TopicRule("#", "number", "{client}", "{topic}"))
        self._cache: dict[str, _Compiled | None] = {}
        self._targets: dict[tuple[str, str], tuple[_Compiled, str, str] | None] = {}
        self._cache_size = cache_size

    def rule_for(self, topic: str) -> _Compiled | None:
        try:
            return self._cache[topic]
        except KeyError:
            pass
        found = None
        for c in self.rules:
            if topic_matches(c.rule.topic, topic):
                found = c
                break
        if found is None and self.unmapped == "auto":
            found = self._auto
        if len(self._cache) >= self._cache_size:
            self._cache.clear()   # bounded: a flood of distinct topics costs lookups, not memory
        self._cache[topic] = found
        return found

    def target(self, topic: str, client: str) -> tuple[_Compiled, str, str] | None:
        """(rule, device, point) for a topic published by `client`; cached, bounded."""
        key = (topic, client)
        try:
            return self._targets[key]
        except KeyError:
            pass
        c = self.rule_for(topic)
        found = None
        if c is not None:
            levels = topic.split("/")
            found = (c, self.device_prefix + c.device.render(topic, levels, client),
                     c.point.render(topic, levels, client))
        if len(self._targets) >= self._cache_size:
            self._targets.clear()
        self._targets[key] = found
        return found

    def map(self, topic: str, payload: bytes, client: str, now: float) -> Batch | None:
        """The readings in one payload, or None when the topic is dropped."""
        t = self._targets.get((topic, client)) or self.target(topic, client)
        if t is None:
            return None
        c, device, point = t
        if c is self._auto:
            names, values, ts, quality = c._number(payload, point, now)
            if quality is not None:
                names, values, ts, quality = c._text(payload, point, now)
        else:
            names, values, ts, quality = c.decode(payload, point, now)
        return Batch(device, names, values, [ts] * len(names), quality, self.source)
