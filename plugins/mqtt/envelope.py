"""The JSON a sitegate publishes to MQTT, and reading it back (for fog gateways).

Batch mode: one message per device batch, the header of ARCHITECTURE.md plus the
readings as columns. Point mode: one message per reading. Reading i of a batch
message has seqNo + i and msgId ``<site>/<deviceId>/<seqNo + i>``.
"""

from __future__ import annotations

import json
import math
from typing import Any, Sequence

import attrs

from sitegate.model import SCHEMA_VERSION, Batch

_dumps = json.JSONEncoder(separators=(",", ":"), default=str, allow_nan=False).encode


def _safe(values: Sequence[Any]) -> list[Any]:
    # JSON has no NaN/inf; a reading's value may be one (a sensor fault). Send null, never crash.
    return [None if isinstance(v, float) and not math.isfinite(v) else v for v in values]


_heads: dict[tuple[str, str], tuple[str, str]] = {}
_point_lists: dict[tuple, str] = {}


def _head(site: str, device: str) -> tuple[str, str, str]:
    """The JSON text around the seqNo digits of a batch message: the same for every batch of a device."""
    key = (site, device)
    got = _heads.get(key)
    if got is None:
        if len(_heads) > 100_000:
            _heads.clear()
        got = _heads[key] = ('{"msgId":' + _dumps(f"{site}/{device}/")[:-1],
                             '","deviceId":' + _dumps(device) + ',"seqNo":',
                             f',"schemaVersion":{SCHEMA_VERSION},"site":' + _dumps(site) + ',"points":')
    return got


_float_repr = float.__repr__


def _numbers(values: Sequence[Any]) -> str:
    """JSON for a list of values; floats (the usual case) without the json module's per-call set-up."""
    try:
        text = ",".join(map(_float_repr, values))
    except TypeError:                 # ints, bools, strings: let json do it
        try:
            return _dumps(list(values))
        except ValueError:
            return _dumps(_safe(values))
    if "n" in text:                   # nan or inf: JSON has neither
        return _dumps(_safe(values))
    return "[" + text + "]"


def _number(x: Any) -> str:
    return _float_repr(x) if type(x) is float and math.isfinite(x) else _dumps(x)


def encode_batch(site: str, batch: Batch) -> bytes:
    """Batch mode: ``ts`` is one number when every reading of the batch shares it (the usual case)."""
    # Hand-built around the columns: this is the uplink's hot path.
    ts = batch.timestamps
    points = batch.points
    key = points if isinstance(points, tuple) else tuple(points)
    points_json = _point_lists.get(key)
    if points_json is None:
        if len(_point_lists) > 10_000:
            _point_lists.clear()
        points_json = _point_lists[key] = _dumps(list(points))
    t0 = ts[0]
    if ts.count(t0) == len(ts):
        produced = ts_json = _number(t0)
    else:
        produced, ts_json = _number(max(ts)), _numbers(ts)
    a, b, c = _head(site, batch.device)
    seq = str(batch.seq)
    parts = [a, seq, b, seq, ',"producedAt":', produced, c, points_json,
             ',"values":', _numbers(batch.values), ',"ts":', ts_json]
    if batch.quality is not None:
        parts += [',"quality":', _dumps(list(batch.quality))]
    parts.append("}")
    return "".join(parts).encode()


def encode_point(site: str, device: str, seq: int, point: str, value: Any, ts: float, quality: int) -> bytes:
    if isinstance(value, float) and not math.isfinite(value):
        value = None
    doc = {"msgId": f"{site}/{device}/{seq}", "deviceId": device, "seqNo": seq, "producedAt": ts,
           "schemaVersion": SCHEMA_VERSION, "site": site, "point": point, "value": value, "ts": ts}
    if quality:
        doc["quality"] = quality
    return _dumps(doc).encode()


@attrs.frozen(slots=True)
class Envelope:
    """One decoded sitegate message: whose readings, with which numbers."""

    site: str
    device: str
    seq: int
    points: list[str]
    values: list[Any]
    timestamps: list[float]
    quality: list[int] | None

    def msg_id(self, i: int = 0) -> str:
        return f"{self.site}/{self.device}/{self.seq + i}"


def decode(payload: bytes) -> list[Envelope]:
    """Read a batch- or point-mode message; raises MalformedPayload (a ValueError) naming the problem."""
    from .payload import MalformedPayload

    try:
        doc = json.loads(payload)
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedPayload(f"sitegate payload is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise MalformedPayload(f"sitegate payload: expected a JSON object, got {type(doc).__name__}")
    try:
        version = doc["schemaVersion"]
        if version != SCHEMA_VERSION:
            raise MalformedPayload(f"sitegate payload: schemaVersion {version!r} is not understood "
                                   f"(this gateway reads {SCHEMA_VERSION})")
        device, seq = doc["deviceId"], doc["seqNo"]
        site = doc.get("site") or doc["msgId"].rsplit("/", 2)[0]
        if not isinstance(device, str) or not device or isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
            raise MalformedPayload(f"sitegate payload: bad deviceId {device!r} or seqNo {seq!r}")
        if "points" in doc:
            points, values, ts = doc["points"], doc["values"], doc["ts"]
            quality = doc.get("quality")
            n = len(points)
            if isinstance(ts, (int, float)) and not isinstance(ts, bool):
                ts = [ts] * n
            if not (isinstance(points, list) and isinstance(values, list) and isinstance(ts, list)) \
                    or len(values) != n or len(ts) != n or (quality is not None and len(quality) != n):
                raise MalformedPayload("sitegate payload: points, values, ts (and quality) must be lists of one length")
        else:
            points, values, ts = [doc["point"]], [doc["value"]], [doc["ts"]]
            quality = [doc["quality"]] if doc.get("quality") else None
        if not all(isinstance(p, str) and p for p in points):
            raise MalformedPayload("sitegate payload: point names must be non-empty strings")
        if not all(isinstance(t, (int, float)) and not isinstance(t, bool) for t in ts):
            raise MalformedPayload("sitegate payload: timestamps must be numbers")
        ts = [float(t) for t in ts]
    except KeyError as exc:
        raise MalformedPayload(f"sitegate payload: missing {exc.args[0]!r}") from None
    except (TypeError, AttributeError) as exc:
        raise MalformedPayload(f"sitegate payload: {exc}") from None
    return [Envelope(site, device, seq, list(points), list(values), ts, quality)]
