"""One consistent picture of the site's counters, taken on the trio thread.

Everything that exports numbers (Prometheus, `sitegate status`, the WebSocket
API) reads a `Snapshot` rather than the live objects, so no reader ever races
the event loop. Services (data plane, API, MQTT-SN gateway, ...) contribute by
having a ``metrics()`` method that returns a list of `Metric`.
"""

from __future__ import annotations

import os
import re
import time
from typing import TYPE_CHECKING, Any

import attrs
import psutil

if TYPE_CHECKING:  # pragma: no cover
    from ..host import SiteHost


@attrs.frozen
class Metric:
    """One sample: name (without the sitegate_ prefix), kind gauge|counter, labels, value, help."""

    name: str
    value: float
    labels: dict[str, str] = attrs.Factory(dict)
    kind: str = "gauge"            # gauge | counter | histogram (value is then the sum)
    help: str = ""
    buckets: tuple[tuple[float, int], ...] = ()   # histogram: (upper bound, cumulative count), +Inf last


@attrs.frozen
class Snapshot:
    taken_at: float
    site: str
    entries: list[dict[str, Any]]
    metrics: list[Metric]
    ready: bool
    not_ready: list[str]


_PROCESS = psutil.Process(os.getpid())
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def take(host: "SiteHost") -> Snapshot:
    """Read the host's state; call on the trio thread (trio.from_thread.run_sync from elsewhere)."""
    m: list[Metric] = []
    entries = host.entries()
    for e in entries:
        m.append(Metric("entry_up", 1.0 if e["state"] == "loaded" else 0.0, {"entry": e["id"], "domain": e["domain"]},
                        help="1 when the entry is loaded"))
        m.append(Metric("entry_state", 1.0, {"entry": e["id"], "domain": e["domain"], "state": e["state"]},
                        help="the entry's lifecycle state (value always 1)"))
        m.append(Metric("entry_retries_total", e["retries"], {"entry": e["id"]}, "counter", "setup retries"))
        m.append(Metric("entry_readings_out_total", e["counters"].get("readings_out", 0), {"entry": e["id"]}, "counter",
                        "readings an entry handed to the pipeline"))
        m.append(Metric("entry_task_failures_total", e["counters"].get("task_failures", 0), {"entry": e["id"]},
                        "counter", "tasks of the entry that raised while it was loaded"))
        hook = host.runners[e["id"]].ctx.integration.hook("entry_metrics") if e["state"] == "loaded" else None
        if hook is not None:
            try:
                for name, value in dict(hook(entry=host.runners[e["id"]].ctx)).items():
                    if _NAME.match(name) and isinstance(value, (int, float)):
                        m.append(Metric(f"adapter_{name}", float(value), {"entry": e["id"], "domain": e["domain"]},
                                        "counter" if name.endswith("_total") else "gauge",
                                        f"{e['domain']} entry metric {name}"))
            except Exception as exc:  # noqa: BLE001 - one plugin's bug must not blank the scrape
                m.append(Metric("exporter_errors", 1.0, {"service": e["id"], "error": type(exc).__name__}))
    p = host.pipeline
    m.append(Metric("readings_in_total", p.readings_in, kind="counter", help="readings accepted by the pipeline"))
    m.append(Metric("batches_in_total", p.batches_in, kind="counter", help="batches accepted by the pipeline"))
    m.append(Metric("pipeline_rejected_total", p.rejected, kind="counter", help="hand-overs refused under backpressure"))
    wd = host.watchdog
    # Every entry (and 'core') from the start, at 0 until it blocks: increase() needs the series first.
    blocked = dict.fromkeys(["core", *host.runners], 0.0)
    blocked.update(wd.blocked)
    for entry, seconds in blocked.items():
        m.append(Metric("loop_blocked_seconds_total", seconds, {"entry": entry}, "counter",
                        "event-loop time held in steps longer than the watchdog threshold, per entry"))
    m.append(Metric("loop_max_step_seconds", wd.max_lag, help="longest single event-loop step seen"))
    for entry, seconds in list(wd.held.items()):
        m.append(Metric("loop_held_seconds_total", seconds, {"entry": entry}, "counter",
                        "event-loop time spent running each entry's tasks ('core' for the rest)"))
    cumulative, running = [], 0
    for bound, count in zip(wd.lag_bounds + (float("inf"),), wd.lag_counts):
        running += count
        cumulative.append((bound, running))
    m.append(Metric("loop_lag_seconds", wd.lag_sum, kind="histogram", buckets=tuple(cumulative),
                    help="how late a 100 ms sleeper wakes: event-loop lag"))
    m.append(Metric("events_total", host.events.emitted, kind="counter", help="events emitted on the bus"))
    m.append(Metric("devices", len(host.devices.devices), help="devices declared by adapters"))
    with _PROCESS.oneshot():
        m.append(Metric("process_resident_bytes", _PROCESS.memory_info().rss, help="resident memory"))
        cpu = _PROCESS.cpu_times()
        m.append(Metric("process_cpu_seconds_total", cpu.user + cpu.system, kind="counter", help="CPU time used"))
    m.append(Metric("uptime_seconds", time.time() - host.started_at, help="seconds since the site started"))
    from .exporters import EXPORTERS
    for name, service in list(host.services.items()):
        fn = getattr(service, "metrics", None)
        if fn is None and name in EXPORTERS:
            fn = (lambda s=service, e=EXPORTERS[name]: e(s, host))
        if fn is None:
            continue
        try:
            m.extend(fn())
        except Exception as exc:  # noqa: BLE001 - one broken exporter must not blank the scrape
            m.append(Metric("exporter_errors", 1.0, {"service": name, "error": type(exc).__name__}))
    not_ready = [f"entry {e['id']} is {e['state']}" + (f": {e['reason']}" if e["reason"] else "")
                 for e in entries if e["state"] not in ("loaded", "setup_retry")]
    for name, service in list(host.services.items()):
        check = getattr(service, "ready", None)
        if check is not None:
            ok, why = check()
            if not ok:
                not_ready.append(f"{name}: {why}")
    return Snapshot(time.time(), host.name, entries, m, not not_ready, not_ready)
