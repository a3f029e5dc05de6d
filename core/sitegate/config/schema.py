"""The site file's shape: attrs classes that cattrs structures the YAML into.

docs/site-reference.md is generated from these classes (config/reference.py), so the
docstrings and field metadata ("doc") here are what integrators read.
Entry ``config:`` mappings stay raw here; each integration's own config class
validates them (see loader.py and validate.py's validate_site).
"""

from __future__ import annotations

import re
import typing
from typing import Any, Literal, NewType

import attrs

from ..structure import Duration, converter

PRIORITIES = ("critical", "normal", "low")
DURABILITY = ("process-crash", "power-loss")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

# Checks live in the types (not only in attrs validators) so that cattrs reports
# them at the field's own path, e.g. routes[0].priority rather than routes[0].
Priority = Literal["critical", "normal", "low"]
Durability = Literal["process-crash", "power-loss"]
EntryId = NewType("EntryId", str)


def _doc(text: str, **kw: Any) -> dict[str, Any]:
    return {"doc": text, **kw}


def _one_of(choices: tuple[str, ...]):
    def check(_, attribute, value):
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {value!r}")
    return check


def _check_id(_, attribute, value):
    if not isinstance(value, str) or not _ID.match(value):
        raise ValueError(f"expected an id of letters, digits, '_', '.', '-' (no '/' or spaces), got {value!r}")


def _structure_id(value: Any, _: Any) -> str:
    if isinstance(value, bool) or value is None:
        # `id: off` or `id: no` is the YAML 1.1 boolean, not the text.
        raise ValueError(f"expected an id, got {value!r}: YAML reads yes/no/on/off/true/false/null as "
                         "values, not text; quote it")
    _check_id(None, None, value)
    return value


converter.register_structure_hook(EntryId, _structure_id)


@attrs.frozen
class EntrySpec:
    """One configured instance of an integration."""

    id: EntryId = attrs.field(validator=_check_id, metadata=_doc("Unique id of the entry within the site; used in routes and device names."))
    domain: str = attrs.field(metadata=_doc("The integration that runs this entry (its manifest's domain)."))
    config: dict[str, Any] = attrs.field(factory=dict, metadata=_doc("The integration's own settings; see its documentation."))
    version: int = attrs.field(default=1, metadata=_doc("Config version the `config` mapping is written for; older versions are migrated."))
    name: str = attrs.field(default="", metadata=_doc("Human-readable name shown in the dashboard."))
    disabled: bool = attrs.field(default=False, metadata=_doc("Keep the entry in the file but do not set it up."))


@attrs.frozen
class Route:
    """Which points go through which processors to which sinks."""

    from_: list[str] = attrs.field(metadata=_doc(
        "Glob(s) on `device/point` (`press-plc/*`, `sensors/*/temp`); a device is named `<entry id>` "
        "or `<entry id>.<device>` by its adapter."))
    through: list[dict[str, Any]] = attrs.field(factory=list, metadata=_doc(
        "Processor steps in order, each a one-key mapping `{type: {params}}`."))
    to: list[str] = attrs.field(factory=list, metadata=_doc("Sink entry ids the route's output goes to."))
    priority: Priority = attrs.field(default="normal", validator=_one_of(PRIORITIES), metadata=_doc(
        "critical: sent at once; normal: batched within 1 s; low: batched within `low_period`."))
    name: str = attrs.field(default="", metadata=_doc("Name used in metrics and messages (default: route<N>)."))
    tags: list[str] = attrs.field(factory=list, metadata=_doc("Only points carrying all these tags match."))


@attrs.frozen
class RuntimeSettings:
    """How the core supervises entries."""

    retry_backoff: list[Duration] = attrs.field(
        factory=lambda: [Duration(5), Duration(10), Duration(20), Duration(40), Duration(80)],
        metadata=_doc("Delays between setup retries of an entry that is not ready; the last repeats."))
    retry_jitter: float = attrs.field(default=0.1, metadata=_doc("Random extra delay, as a fraction of each retry delay."))
    shutdown_timeout: Duration = attrs.field(default=Duration(10), metadata=_doc("Time allowed for entries to unload on SIGINT/SIGTERM."))
    unload_timeout: Duration = attrs.field(default=Duration(5), metadata=_doc("Time one entry's unload_entry may take before it is cancelled."))
    watchdog_threshold: Duration = attrs.field(default=Duration(0.2), metadata=_doc("Event-loop lag that is reported as a blocked loop, naming the entry."))
    state_dir: str = attrs.field(default="", metadata=_doc("Folder for the site's state (WAL, installs, tokens); default `.sitegate/` beside the site file."))


@attrs.frozen
class ApiSettings:
    """The WebSocket API and dashboard."""

    enabled: bool = attrs.field(default=True, metadata=_doc("Serve the WebSocket API and the dashboard."))
    host: str = attrs.field(default="127.0.0.1", metadata=_doc("Address to listen on."))
    port: int = attrs.field(default=8765, metadata=_doc("Port to listen on (0 picks a free one)."))
    tls_cert: str = attrs.field(default="", metadata=_doc("PEM certificate (chain) file: serve https/wss instead of http/ws."))
    tls_key: str = attrs.field(default="", metadata=_doc("PEM private key file of `tls_cert`."))
    origins: list[str] = attrs.field(factory=list, metadata=_doc(
        "Browser origins allowed to open the WebSocket (e.g. `https://ops.example`); the dashboard's own "
        "origin is always allowed, `*` allows any."))
    queue_soft: int = attrs.field(default=1024, metadata=_doc(
        "Messages queued for one client above which it must catch up within `queue_soft_time`."))
    queue_soft_time: Duration = attrs.field(default=Duration(10), metadata=_doc(
        "How long a client may stay above `queue_soft` before it is disconnected."))
    queue_hard: int = attrs.field(default=4096, metadata=_doc("Messages queued for one client that disconnect it at once."))
    auth_failures: int = attrs.field(default=5, metadata=_doc(
        "Failed logins from one address within `auth_window` after which its logins are refused unchecked."))
    auth_window: Duration = attrs.field(default=Duration(60), metadata=_doc("Window of `auth_failures`."))
    demo_token: str = attrs.field(default="", metadata=_doc(
        "Role (viewer, operator, admin) of a fresh token created at start and logged with the dashboard URL; "
        "for demos only."))


class ByteSize(int):
    """Bytes, written in files as a number or with a unit: 500MB, 2GB, 64KiB."""


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
               "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def _structure_size(value: Any, _: Any) -> ByteSize:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return ByteSize(value)
    m = _SIZE.match(value) if isinstance(value, str) else None
    if not m:
        raise ValueError(f"expected a size such as 512MB or 2GB, got {value!r}")
    return ByteSize(int(float(m.group(1)) * _SIZE_UNITS[(m.group(2) or "b").lower()]))


converter.register_structure_hook(ByteSize, _structure_size)
converter.register_unstructure_hook(ByteSize, int)


@attrs.frozen
class ClassTTL:
    """How long readings of each priority may wait for delivery before they expire (counted as drops)."""

    critical: Duration = attrs.field(default=Duration(30 * 86400), metadata=_doc("TTL of critical readings."))
    normal: Duration = attrs.field(default=Duration(7 * 86400), metadata=_doc("TTL of normal readings."))
    low: Duration = attrs.field(default=Duration(86400), metadata=_doc("TTL of low readings."))


@attrs.frozen
class PrivacyPolicy:
    """Which points never leave the site raw (only as aggregates such as `temp.avg`)."""

    restricted: list[str] = attrs.field(factory=list, metadata=_doc(
        "Glob(s) on `device/point` kept on site raw, besides points their adapter declares restricted."))
    allow_raw: bool = attrs.field(default=False, metadata=_doc(
        "Let restricted points go raw to every sink (the site's own decision; logged at start)."))


@attrs.frozen
class StorageSettings:
    """The data plane's store: disk budget, retention per priority, batching of delivery, privacy."""

    budget: ByteSize = attrs.field(default=ByteSize(1 << 30), metadata=_doc(
        "Most bytes of undelivered readings kept; beyond it the oldest low, then normal readings are dropped "
        "(counted), never critical ones."))
    ttl: ClassTTL = attrs.field(factory=ClassTTL, metadata=_doc("Per-priority time to live of undelivered readings."))
    normal_period: Duration = attrs.field(default=Duration(1.0), metadata=_doc(
        "Normal readings are delivered in batches at most this long after commit."))
    low_period: Duration = attrs.field(default=Duration(30.0), metadata=_doc(
        "Low readings are delivered in batches at most this long after commit."))
    retry_initial: Duration = attrs.field(default=Duration(0.5), metadata=_doc(
        "First delay before retrying a failed delivery; doubles per failure, with jitter."))
    retry_max: Duration = attrs.field(default=Duration(30.0), metadata=_doc("Longest delay between delivery retries."))
    deliveries_in_flight: int = attrs.field(default=2, validator=attrs.validators.and_(
        attrs.validators.instance_of(int), attrs.validators.ge(1), attrs.validators.le(16)), metadata=_doc(
        "Deliver calls in flight per sink on a backlog (1-16), for sinks that allow concurrent calls "
        "(MQTT); sent in commit order, the cursor moving only over completed ones. 1: one at a time."))
    privacy: PrivacyPolicy = attrs.field(factory=PrivacyPolicy, metadata=_doc("The privacy guardrail."))


@attrs.frozen
class DetectorSettings:
    """Silent-failure detectors (each raises an event and a metric)."""

    device_quiet_intervals: int = attrs.field(default=5, metadata=_doc(
        "A device is quiet after this many of its usual intervals without readings while its entry is loaded."))
    ingestion_stall: Duration = attrs.field(default=Duration(30), metadata=_doc(
        "Readings stopped entering the pipeline for this long while adapters are loaded."))
    sink_stuck: Duration = attrs.field(default=Duration(120), metadata=_doc(
        "An online sink whose cursor has not advanced for this long while data waits."))
    replay_ratio: float = attrs.field(default=0.05, metadata=_doc(
        "Share of duplicate deliveries after a reconnect above which a replay is reported."))
    drift: list[dict[str, Any]] = attrs.field(factory=list, metadata=_doc(
        "Pairs to compare: `{point: dev/temp, reference: ref/temp, max_delta: 2.0, window: 10m}`."))


@attrs.frozen
class ObservabilitySettings:
    """Metrics, health and detectors for operators."""

    metrics: bool = attrs.field(default=True, metadata=_doc("Serve /metrics, /healthz and /readyz over HTTP."))
    host: str = attrs.field(default="127.0.0.1", metadata=_doc("Address of the metrics endpoint."))
    port: int = attrs.field(default=9108, metadata=_doc("Port of the metrics endpoint (0 picks a free one)."))
    detectors: DetectorSettings = attrs.field(factory=DetectorSettings, metadata=_doc("Silent-failure detectors."))


@attrs.frozen
class Site:
    """A whole site: everything `sitegate run` needs."""

    site: str = attrs.field(metadata=_doc("Name of the site, used in message ids and topics (e.g. plant-a/line-3)."))
    entries: list[EntrySpec] = attrs.field(factory=list, metadata=_doc("Configured integrations."))
    routes: list[Route] = attrs.field(factory=list, metadata=_doc("Processing and delivery of readings."))
    durability: Durability = attrs.field(default="process-crash", validator=_one_of(DURABILITY), metadata=_doc(
        "process-crash: committed data survives a crash of sitegate (SQLite synchronous=NORMAL); "
        "power-loss: also survives losing power (synchronous=FULL)."))
    plugins: dict[str, str] = attrs.field(factory=dict, metadata=_doc("Version pins or ranges per integration domain."))
    runtime: RuntimeSettings = attrs.field(factory=RuntimeSettings, metadata=_doc("Supervision settings."))
    api: ApiSettings = attrs.field(factory=ApiSettings, metadata=_doc("WebSocket API and dashboard."))
    observability: ObservabilitySettings = attrs.field(factory=ObservabilitySettings, metadata=_doc(
        "Metrics, health endpoints and silent-failure detectors."))
    storage: StorageSettings = attrs.field(factory=StorageSettings, metadata=_doc(
        "Disk budget, retention and privacy of the data plane (see docs/delivery.md)."))


def _rename_from(cls: type) -> None:
    # `from` is a Python keyword, so the attribute is `from_`; files and output say `from`.
    from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override
    converter.register_structure_hook(cls, make_dict_structure_fn(
        cls, converter, _cattrs_forbid_extra_keys=True, from_=override(rename="from")))
    converter.register_unstructure_hook(cls, make_dict_unstructure_fn(
        cls, converter, from_=override(rename="from")))


_rename_from(Route)
