"""Payload rules of the MQTT-SN gateway: the core's payload mapping (sitegate.payloads), plus
what only this gateway does: `{client}` (the publishing node) as the default device, the
`unmapped` policy, the entry's device prefix, and bad payloads kept visible as BAD_DECODE
readings (and handed to `on_malformed`, which dead-letters them).
"""

from __future__ import annotations

from typing import Callable, ClassVar, Sequence

import attrs

from sitegate.model import Batch
from sitegate.payloads import (MalformedPayload, Mapper, MapperTable, PayloadMapping, StructField, filter_of,
                               has_wildcards, topic_matches, validate_filter)

__all__ = ["PayloadMapper", "StructField", "TopicRule", "has_wildcards", "topic_matches", "validate_filter"]


@attrs.frozen
class TopicRule(PayloadMapping):
    """How the payloads of the topics matching `topic` become readings (sitegate.payloads.PayloadMapping).

    `topic` is the filter (MQTT `+`/`#`; a level written `{name}` matches like `+` and names it);
    `device` defaults to `{client}`, the node that published.
    """

    placeholders: ClassVar[frozenset[str]] = PayloadMapping.placeholders | {"client"}
    default_device: ClassVar[str | None] = "{client}"

    def __attrs_post_init__(self):
        if not self.topic:
            raise ValueError("topic: a topic filter is required, e.g. site/+/temp")
        self.check()

    @property
    def filter(self) -> str:
        return filter_of(self.topic or "")


OnMalformed = Callable[[str, bytes, str, str, MalformedPayload], None]   # (topic, payload, client, device, error)


class PayloadMapper:
    """Maps (topic, payload, client) to a Batch using the first matching rule.

    Topics without a rule follow `unmapped`: `auto` (a number if the payload is one,
    else its text), or `drop` (returns None). A payload that does not decode still
    gives its readings, with the unreadable values None and quality BAD_DECODE, and is
    reported to `on_malformed`. Lookups are cached per topic, bounded.
    """

    def __init__(self, rules: Sequence[TopicRule], *, unmapped: str = "auto", device_prefix: str = "",
                 source: str = "", cache_size: int = 4096, on_malformed: OnMalformed | None = None):
        if unmapped not in ("auto", "drop"):
            raise ValueError(f"unmapped: expected auto or drop, got {unmapped!r}")
        self.rules = list(rules)
        self.unmapped = unmapped
        self.device_prefix = device_prefix
        self.source = source
        self.on_malformed = on_malformed
        self.cache_size = cache_size
        self._targets: dict[tuple[str, str], tuple[Mapper, str, str] | MalformedPayload | None] = {}
        self.table = MapperTable([(r.filter, Mapper(r, entry=source, cache_size=cache_size)) for r in self.rules],
                                 cache_size=cache_size)
        self._auto = Mapper(TopicRule("#", "number", "{client}", "{topic}"), entry=source, cache_size=cache_size)
        self._auto_text = Mapper(TopicRule("#", "text", "{client}", "{topic}"), entry=source, cache_size=cache_size)

    def target(self, topic: str, client: str) -> tuple[Mapper, str, str] | MalformedPayload | None:
        """(mapper, device, point) for a topic published by `client`, or the reason it names none;
        None: dropped. Cached per (topic, client), bounded."""
        key = (topic, client)
        try:
            return self._targets[key]
        except KeyError:
            pass
        mapper = self.table.lookup(topic)
        if mapper is None and self.unmapped == "auto":
            mapper = self._auto
        found: tuple[Mapper, str, str] | MalformedPayload | None = None
        if mapper is not None:
            try:
                device, point = mapper.names(topic, client)
                found = (mapper, self.device_prefix + (device or ""), point)
            except MalformedPayload as exc:
                found = exc
        if len(self._targets) >= self.cache_size:
            self._targets.clear()     # bounded: a flood of distinct topics costs lookups, not memory
        self._targets[key] = found
        return found

    def map(self, topic: str, payload: bytes, client: str, now: float) -> Batch | None:
        """The readings in one payload, or None when the topic is dropped (or names no device)."""
        try:
            return self.decode(topic, payload, client, now)
        except MalformedPayload as exc:
            d = exc.partial
            if self.on_malformed is not None:
                self.on_malformed(topic, payload, client, "" if d is None else d.device or "", exc)
            if d is None:
                return None
            return Batch(d.device, d.points, d.values, d.timestamps, d.quality, self.source)

    def decode(self, topic: str, payload: bytes, client: str, now: float) -> Batch | None:
        """`map` without the BAD_DECODE readings: a payload that does not decode raises
        MalformedPayload (its `partial`: what map gives) and is not reported to `on_malformed`."""
        t = self._targets.get((topic, client)) or self.target(topic, client)
        if t is None:
            return None
        if type(t) is not tuple:
            raise t
        mapper, device, point = t
        try:
            points, values, stamps, quality = mapper.read(device, point, payload, now)
        except MalformedPayload:
            if mapper is not self._auto:
                raise
            points, values, stamps, quality = self._auto_text.read(device, point, payload, now)
        return Batch(device, points, values, stamps, quality, self.source)
