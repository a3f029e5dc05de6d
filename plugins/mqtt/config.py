"""The `mqtt` entry's settings: the broker connection, the uplink (sink) and the subscriptions (adapter).

Structured from the site file by the core's cattrs converter; checks here raise
ValueError with the key's name so `sitegate check` points at the bad value.
"""

from __future__ import annotations

import re
import string
from typing import ClassVar, Literal

import attrs

from sitegate.payloads import FORMATS, PayloadMapping, filter_of, validate_filter
from sitegate.structure import Duration

_TOPIC_FIELDS_UPLINK = {"site", "entry", "device", "point"}


def template_fields(template: str) -> set[str]:
    """The {names} used by a str.format template (raises ValueError on a malformed one)."""
    try:
        return {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as exc:
        raise ValueError(f"malformed template {template!r}: {exc}") from None


def _check_template(allowed: set[str], what: str):
    def check(_, attribute, value):
        if value is None:
            return
        used = template_fields(value)
        unknown = used - allowed
        if unknown or "" in used:
            raise ValueError(f"{attribute.name}: {what} template {value!r} uses unknown field(s) "
                             f"{', '.join(sorted(unknown or {'{}'}))}; known: {', '.join(sorted(allowed))}")
        if "+" in value or "#" in value:
            raise ValueError(f"{attribute.name}: a topic to publish to cannot hold wildcards, got {value!r}")
    return check


@attrs.frozen
class TlsConfig:
    """TLS to the broker. Without `ca`, the system's trust store is used."""

    ca: str | None = None            # CA certificate(s) file, PEM
    cert: str | None = None          # client certificate for mutual TLS, PEM
    key: str | None = None           # its private key, PEM
    insecure: bool = False           # do not check the broker's host name (tests only)

    def __attrs_post_init__(self):
        if (self.cert is None) != (self.key is None):
            raise ValueError("tls: give both cert and key for mutual TLS, or neither")


@attrs.frozen
class StatusConfig:
    """Birth and last will: `online` is published (retained) on connect, the broker publishes `offline` when we vanish."""

    topic: str = attrs.field(default="{site}/{entry}/status",
                             validator=_check_template({"site", "entry"}, "status topic"))
    online: str = "online"
    offline: str = "offline"
    retain: bool = True


@attrs.frozen
class PublishConfig:
    """How batches become MQTT messages (the sink kind)."""

    mode: Literal["batch", "point"] = "batch"    # one JSON message per device batch, or one per reading
    topic: str | None = attrs.field(default=None, validator=_check_template(_TOPIC_FIELDS_UPLINK, "publish topic"))
    qos: int = 1
    retain: bool = False
    timeout: Duration = Duration(10.0)           # longest wait for the broker's PUBACKs of one delivery

    def __attrs_post_init__(self):
        if self.mode not in ("batch", "point"):
            raise ValueError(f"mode: expected batch or point, got {self.mode!r}")
        if self.qos not in (0, 1):
            raise ValueError(f"qos: expected 0 or 1 (1 is what guarantees delivery), got {self.qos!r}")
        if self.mode == "batch" and self.topic and "point" in template_fields(self.topic):
            raise ValueError(f"topic: {{point}} cannot be used in batch mode (one message holds many points): {self.topic!r}")

    @property
    def topic_template(self) -> str:
        if self.topic:
            return self.topic
        return "{site}/{device}" if self.mode == "batch" else "{site}/{device}/{point}"


@attrs.frozen
class Subscription(PayloadMapping):
    """One topic filter to subscribe to (the adapter kind), and how its messages become readings.

    The mapping keys are sitegate.payloads.PayloadMapping's (shared with the MQTT-SN gateway);
    `filter` defaults to `topic` with its named levels as `+`.
    """

    filter: str = ""                  # MQTT topic filter, e.g. factory/+/+/data
    qos: int = 1

    formats: ClassVar[tuple[str, ...]] = FORMATS + ("sitegate",)   # sitegate: another gateway's uplink

    def __attrs_post_init__(self):
        if not self.filter and self.topic:
            object.__setattr__(self, "filter", filter_of(self.topic))
        if not self.filter:
            raise ValueError("filter: a topic filter is required, e.g. factory/+/+/data")
        if self.qos not in (0, 1):
            raise ValueError(f"qos: expected 0 or 1, got {self.qos!r}")
        try:
            validate_filter(self.filter)
        except ValueError as exc:
            raise ValueError(f"filter: {self.filter!r} is not a valid MQTT topic filter ({exc})") from None
        self.check()
        if self.topic is not None:
            names, levels = self.topic.split("/"), self.filter.split("/")
            if len(names) != len(levels) and levels[-1] != "#":
                raise ValueError(f"topic: {self.topic!r} has {len(names)} levels, the filter {self.filter!r} "
                                 f"{len(levels)}")


_CLIENT_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


@attrs.frozen
class MqttConfig:
    """One broker connection. `publish` makes it a sink (used when routes send to it);
    `subscribe` makes it an adapter."""

    config_version = 1

    host: str = "127.0.0.1"
    port: int | None = None                   # 1883, or 8883 with tls
    protocol: str = "5"                       # "5" or "3.1.1" (5 written as a number is fine)
    client_id: str | None = None              # default sitegate-<site>-<entry>; fixed, so sessions persist
    username: str | None = None
    password: str | None = None               # write it as !secret in the site file
    tls: TlsConfig | None = None
    keepalive: Duration = Duration(30.0)
    reconnect_min: Duration = Duration(0.5)   # backoff between reconnect attempts, doubling up to max
    reconnect_max: Duration = Duration(30.0)
    connect_timeout: Duration = Duration(5.0)  # at setup: how long to wait for the first connection
    clean_session: bool | None = None         # default: persistent session when subscribing, clean otherwise
    session_expiry: Duration = Duration(7 * 86400.0)   # MQTT 5: how long the broker keeps our session
    receive_maximum: int = 1000               # MQTT 5: unacknowledged messages the broker may send us
    publish: PublishConfig = PublishConfig()
    status: StatusConfig | None = StatusConfig()
    subscribe: list[Subscription] = attrs.Factory(list)

    def __attrs_post_init__(self):
        if self.protocol not in ("3.1.1", "5"):
            raise ValueError(f"protocol: expected '3.1.1' or '5', got {self.protocol!r}")
        if self.port is not None and not 0 < self.port < 65536:
            raise ValueError(f"port: expected 1..65535, got {self.port}")
        if self.client_id is not None and not _CLIENT_ID.match(self.client_id):
            raise ValueError(f"client_id: expected 1-64 letters, digits, '.', '_', ':', '-', got {self.client_id!r}")
        if self.password is not None and self.username is None:
            raise ValueError("password: given without username")
        if float(self.reconnect_min) <= 0 or float(self.reconnect_max) < float(self.reconnect_min):
            raise ValueError("reconnect_min/reconnect_max: expected 0 < reconnect_min <= reconnect_max")
        if not 1 <= self.receive_maximum <= 65535:
            raise ValueError(f"receive_maximum: expected 1..65535, got {self.receive_maximum}")

    @property
    def effective_port(self) -> int:
        return self.port or (8883 if self.tls else 1883)

    @property
    def persistent(self) -> bool:
        return (not self.clean_session) if self.clean_session is not None else bool(self.subscribe)
