"""Diagnostics bundles, in the manner of Home Assistant: everything support needs, no secret.

A bundle holds versions, the entry's manifest, config, state, recent errors
and counters, plus what the integration's ``entry_diagnostics`` hook adds.
Secrets are removed twice over: every value read through ``!secret`` is
masked wherever it appears, and so is every value under a key that names a
credential (password, token, secret, private key).
"""

from __future__ import annotations

import platform
import re
import time
from typing import TYPE_CHECKING, Any

import attrs

from . import CORE_API_VERSION, __version__
from .config.masking import MASK, mask_secrets

if TYPE_CHECKING:  # pragma: no cover
    from .host import SiteHost

_CREDENTIAL_KEY = re.compile(r"pass(word|wd)?|secret|token|private|api[_-]?key|^key$|credential", re.I)


def _redact_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: (MASK if isinstance(k, str) and _CREDENTIAL_KEY.search(k) and v not in (None, "", [], {})
                    else _redact_keys(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redact_keys(v) for v in value]
    return value


def redact(value: Any, secrets) -> Any:
    return _redact_keys(mask_secrets(value, secrets))


def _jsonable(value: Any) -> Any:
    if attrs.has(type(value)):
        return _jsonable(attrs.asdict(value, recurse=True))
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return repr(value)


def _entry_part(host: "SiteHost", entry_id: str) -> dict[str, Any]:
    ctx = host.entry(entry_id)
    part: dict[str, Any] = {
        "entry": ctx.describe(),
        "manifest": _jsonable(ctx.integration.manifest),
        "config": _jsonable(ctx.spec.config),
        "config_version": ctx.spec.version,
        "devices": sorted(d for d, info in host.devices.devices.items() if info.entry == entry_id),
        "recent_events": [e.to_json() for e in host.events.recent if e.source == entry_id][-50:],
    }
    hook = ctx.integration.hook("entry_diagnostics")
    if hook is not None:
        try:
            part["integration"] = _jsonable(hook(entry=ctx))
        except Exception as exc:  # noqa: BLE001 - a diagnostics bug must not hide the rest
            part["integration"] = {"error": f"entry_diagnostics raised {type(exc).__name__}: {exc}"}
    return part


def bundle(host: "SiteHost", target: str | None = None) -> dict[str, Any]:
    """The redacted bundle for the whole site, one entry, or one device (by id)."""
    doc: dict[str, Any] = {
        "generated_at": time.time(),
        "sitegate": {"version": __version__, "core_api": CORE_API_VERSION, "python": platform.python_version(),
                     "platform": platform.platform()},
        "site": host.name,
        "integrations": {d: i.manifest.version for d, i in host.loader.loaded.items()},
    }
    twins = host.services.get("twins")
    twin = twins.get(target) if twins is not None and target is not None and target not in host.runners else None
    if target is None:
        doc["entries"] = {e: _entry_part(host, e) for e in host.runners}
        doc["pipeline"] = {"readings_in": host.pipeline.readings_in, "batches_in": host.pipeline.batches_in,
                           "rejected": host.pipeline.rejected}
        doc["loop"] = {"blocked_seconds": dict(host.watchdog.blocked), "max_step": host.watchdog.max_lag}
        doc["recent_problems"] = [e.to_json() for e in host.events.recent if e.severity >= 1][-100:]
    elif target in host.runners:
        doc["entry"] = _entry_part(host, target)
    elif target in host.devices.devices or twin is not None:
        info = host.devices.devices.get(target)
        doc["device"] = {"info": _jsonable(info) if info is not None else None,
                         "latest": {p: list(v) for p, v in host.pipeline.latest_of(target).items()},
                         "recent_events": [e.to_json() for e in host.events.recent if e.device == target][-50:]}
        if twin is not None:   # what the site knows of it: versions an update handler reported, config drift, liveness
            doc["device"]["twin"] = _jsonable(twin)
        if info is not None and info.entry in host.runners:
            doc["entry"] = _entry_part(host, info.entry)
    else:
        raise KeyError(f"no entry or device named {target!r}; entries: {', '.join(host.runners) or 'none'}")
    return redact(doc, host.loaded.secrets)
