"""Settings of one MQTT-SN gateway entry, as written under `config:` in the site file.

Structured by the core's cattrs converter (sitegate.structure), so a bad value is
reported with its place. Used by the gateway (gateway.py) and the entry (__init__.py);
payload rules are the core's payload mapping (payload.py, sitegate.payloads).
"""

from __future__ import annotations

import fnmatch

import attrs

from sitegate.structure import Duration

from .payload import TopicRule, validate_filter


@attrs.frozen
class GatewayConfig:
    """One MQTT-SN gateway: where it listens, what it knows, and the limits that keep it bounded."""

    config_version = 1

    host: str = "0.0.0.0"
    port: int = 1884
    gateway_id: int = 1
    # Topic ids both sides know without REGISTER, e.g. {1: "line3/press/temp"}.
    predefined: dict[int, str] = attrs.Factory(dict)
    # How payloads become readings, first matching rule wins (see payload.py).
    topics: list[TopicRule] = attrs.Factory(list)
    unmapped: str = "auto"            # topics without a rule: auto (number or text) or drop
    # Where `write` commands go: a topic template with {device} (the client id) and {point}.
    command_topic: str = "{device}/cmd/{point}"
    command_qos: int = 1
    # ADVERTISE every `advertise_interval` to these "host:port" addresses (0 disables).
    advertise_interval: Duration = Duration(0)
    advertise_to: list[str] = attrs.Factory(list)

    # --- security posture and bounds ----------------------------------------------------
    allow_clients: list[str] = attrs.Factory(list)   # client id patterns (fnmatch); empty allows all
    allow_qos_minus1: bool = True     # accept QoS -1 publishes (no connection, predefined/short topics)
    max_sessions: int = 1000
    max_topics_per_client: int = 256
    max_subscriptions_per_client: int = 32
    max_buffered_per_client: int = 100   # messages held for a sleeping or busy client
    max_qos2_inflight: int = 32          # QoS 2 message ids held per client awaiting PUBREL
    max_topic_length: int = 128
    max_client_id_length: int = 64       # the spec says 23; real nodes use longer ids
    max_datagram: int = 1500
    max_pending: int = 20000             # publishes awaiting delivery before "congestion"
    max_retained: int = 1000
    rate_limit: float = 200.0            # datagrams/s per client (token bucket)
    rate_burst: int = 400
    anonymous_rate_limit: float = 1000.0  # QoS -1 datagrams/s from all unconnected senders together
    # --- timers --------------------------------------------------------------------------
    keepalive_grace: float = 1.5         # a client is lost after grace x its keep-alive (or sleep) duration
    retry_interval: Duration = Duration(5.0)   # T_retry for REGISTER/PUBLISH to clients
    retry_count: int = 3                 # N_retry
    session_expiry: Duration = Duration(3600.0)  # persistent sessions kept after disconnect
    tick: Duration = Duration(0.25)      # housekeeping period (timers are checked this often)
    delivery_batch: int = 2000           # publishes handed to the pipeline per call at most

    def __attrs_post_init__(self):
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port: expected 0..65535, got {self.port}")
        if not 0 <= self.gateway_id <= 255:
            raise ValueError(f"gateway_id: expected 0..255, got {self.gateway_id}")
        for tid, name in self.predefined.items():
            if not 1 <= tid <= 0xFFFE:
                raise ValueError(f"predefined: topic id {tid} is outside 1..65534")
            try:
                validate_filter(name, allow_wildcards=False)
            except ValueError as exc:
                raise ValueError(f"predefined[{tid}]: {exc}") from None
        if len(set(self.predefined.values())) != len(self.predefined):
            raise ValueError("predefined: two ids name the same topic")
        if self.unmapped not in ("auto", "drop"):
            raise ValueError(f"unmapped: expected auto or drop, got {self.unmapped!r}")
        if self.command_qos not in (0, 1, 2):
            raise ValueError(f"command_qos: expected 0, 1 or 2, got {self.command_qos}")
        for i, addr in enumerate(self.advertise_to):
            host, _, port = addr.rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"advertise_to[{i}]: expected host:port, got {addr!r}")
        for name in ("max_sessions", "max_topics_per_client", "max_subscriptions_per_client",
                     "max_buffered_per_client", "max_qos2_inflight", "max_topic_length", "max_client_id_length",
                     "max_pending", "retry_count", "delivery_batch", "rate_burst"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected at least 1, got {getattr(self, name)}")
        if self.max_datagram < 64:
            raise ValueError(f"max_datagram: expected at least 64, got {self.max_datagram}")
        if self.rate_limit <= 0 or self.anonymous_rate_limit <= 0:
            raise ValueError("rate_limit and anonymous_rate_limit must be positive")
        if self.keepalive_grace < 1.0:
            raise ValueError(f"keepalive_grace: expected at least 1.0, got {self.keepalive_grace}")
        if float(self.tick) <= 0 or float(self.retry_interval) <= 0:
            raise ValueError("tick and retry_interval must be positive durations")

    def client_allowed(self, client_id: str) -> bool:
        return not self.allow_clients or any(fnmatch.fnmatchcase(client_id, p) for p in self.allow_clients)
