"""The values that travel through a site: batches of readings, events, commands.

Adapters build `Batch`es, the pipeline (pipeline.py) stamps them with sequence
numbers and routes them through processors to sinks. Columnar on purpose: a
batch is one device's samples, so per-reading work is a loop over lists, never
an object per reading.
"""

from __future__ import annotations

import enum
import time
from typing import Any, Iterator, Sequence

import attrs

# The header every message leaving the gateway carries (see ARCHITECTURE.md).
SCHEMA_VERSION = 1


class Quality(enum.IntEnum):
    """Quality of one reading. 0 is good; >= 0x80 is bad, with the reason as the code."""

    GOOD = 0x00
    UNCERTAIN = 0x40
    STALE = 0x41            # last known value, source not refreshed in time
    SUBSTITUTED = 0x42      # value produced by the gateway (e.g. calibration fallback)
    BAD = 0x80              # bad, no more specific reason
    BAD_TIMEOUT = 0x81      # the device did not answer in time
    BAD_COMM = 0x82         # connection lost or refused
    BAD_DEVICE = 0x83       # the device answered with an error (exception response)
    BAD_CONFIG = 0x84       # the point's configuration cannot be satisfied
    BAD_OFFLINE = 0x85      # the device is marked offline
    BAD_DECODE = 0x86       # the answer could not be decoded (short, malformed)
    BAD_SENSOR = 0x87       # the source itself reports a sensor failure

    @property
    def is_good(self) -> bool:
        return self < 0x40

    @property
    def is_bad(self) -> bool:
        return self >= 0x80


@attrs.frozen(slots=True)
class Batch:
    """Samples of several points of one device, as parallel columns.

    `quality` is None when every reading is good (the common case costs
    nothing). `seq` is the sequence number of the first reading, set by the
    pipeline when the batch is accepted (-1 before); reading i has seq + i.
    """

    device: str
    points: Sequence[str]        # lists or tuples: indexed and zipped on the hot path
    values: Sequence[Any]
    timestamps: Sequence[float]
    quality: Sequence[int] | None = None
    source: str = ""
    seq: int = -1

    def __attrs_post_init__(self) -> None:
        n = len(self.points)
        if len(self.values) != n or len(self.timestamps) != n or not isinstance(self.points, (list, tuple)):
            if not isinstance(self.points, (list, tuple)):
                raise TypeError(f"batch for device {self.device!r}: columns must be lists or tuples, "
                                f"got {type(self.points).__name__}")
            raise ValueError(
                f"batch for device {self.device!r}: columns differ in length "
                f"(points={n}, values={len(self.values)}, timestamps={len(self.timestamps)})"
            )
        if self.quality is not None and len(self.quality) != n:
            raise ValueError(f"batch for device {self.device!r}: quality has {len(self.quality)} entries, expected {n}")

    def __len__(self) -> int:
        return len(self.points)

    @classmethod
    def of(cls, device: str, values: dict[str, Any], ts: float | None = None, *, source: str = "",
           quality: dict[str, int] | None = None) -> "Batch":
        """A batch from a {point: value} mapping sampled at one time (now by default)."""
        if ts is None:
            ts = time.time()
        points = list(values)
        q = None
        if quality:
            q = [int(quality.get(p, Quality.GOOD)) for p in points]
        return cls(device, points, list(values.values()), [ts] * len(points), q, source)

    def rows(self) -> Iterator[tuple[str, Any, float, int]]:
        """(point, value, timestamp, quality) per reading: for tests and slow paths."""
        q = self.quality or (0,) * len(self.points)
        return zip(self.points, self.values, self.timestamps, q)

    def select(self, indices: Sequence[int]) -> "Batch":
        """A batch of the readings at `indices` (keeps the source; seq is reset)."""
        q = self.quality
        return Batch(
            self.device,
            [self.points[i] for i in indices],
            [self.values[i] for i in indices],
            [self.timestamps[i] for i in indices],
            None if q is None else [q[i] for i in indices],
            self.source,
        )

    def quality_at(self, i: int) -> int:
        return 0 if self.quality is None else self.quality[i]


def message_id(site: str, device: str, seq: int) -> str:
    """The idempotency key of one reading: the same reading always gets the same id,
    also when it is delivered again after a crash, so a consumer can deduplicate."""
    return f"{site}/{device}/{seq}"


def header(site: str, device: str, seq: int, produced_at: float) -> dict[str, Any]:
    """The message header of ARCHITECTURE.md, as carried by everything leaving the gateway."""
    return {
        "msgId": message_id(site, device, seq),
        "deviceId": device,
        "seqNo": seq,
        "producedAt": produced_at,
        "schemaVersion": SCHEMA_VERSION,
    }


@attrs.frozen(slots=True)
class PointInfo:
    """What an adapter knows about a point: shown in twins, used by routes (tags) and privacy (restricted)."""

    name: str
    unit: str = ""
    datatype: str = "float"          # float, int, bool, str
    writable: bool = False
    tags: tuple[str, ...] = ()
    restricted: bool = False         # never leaves the site raw (privacy guardrail)
    description: str = ""


@attrs.frozen(slots=True)
class DeviceInfo:
    """Identity of a field device, declared by the adapter entry that owns it."""

    id: str                          # site-wide: "<entry id>" or "<entry id>.<device>"
    entry: str
    name: str = ""
    model: str = ""
    manufacturer: str = ""
    hw_version: str = ""
    fw_version: str = ""
    via_device: str | None = None    # e.g. sensor node behind an MQTT-SN forwarder
    points: tuple[PointInfo, ...] = ()


class Severity(enum.IntEnum):
    INFO = 0
    WARNING = 1
    CRITICAL = 2


@attrs.frozen(slots=True)
class Event:
    """Something that happened: an alert, an entry state change, a device going offline.

    `kind` is a dotted name (`alert`, `entry.state`, `device.offline`, ...);
    `data` holds JSON-serialisable details.
    """

    kind: str
    source: str = ""
    device: str | None = None
    point: str | None = None
    severity: Severity = Severity.INFO
    message: str = ""
    data: dict[str, Any] = attrs.field(factory=dict)
    ts: float = attrs.field(factory=time.time)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "source": self.source, "device": self.device, "point": self.point,
            "severity": self.severity.name.lower(), "message": self.message, "data": self.data, "ts": self.ts,
        }


@attrs.frozen(slots=True)
class Command:
    """An instruction to a device, sent to the adapter entry that owns it.

    `action` is adapter-defined; `write` with `point` and `value` is understood
    by every adapter that has writable points.
    """

    device: str
    action: str
    point: str | None = None
    value: Any = None
    args: dict[str, Any] = attrs.field(factory=dict)
    timeout: float = 5.0
    issued_by: str = "core"


@attrs.frozen(slots=True)
class CommandResult:
    """How a command ended: `ack`, `nack` (the device refused, `detail` says why) or `timeout`."""

    status: str
    detail: str = ""
    value: Any = None

    @property
    def ok(self) -> bool:
        return self.status == "ack"
