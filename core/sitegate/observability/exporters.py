"""Metrics of the core services (data plane, WebSocket API, rollouts), read from their public state.

Each exporter turns one service's `describe()`/`status()` into `Metric`s at
scrape time; labels are bounded (sink ids, priorities, rollout ids), never per
reading. The seeds' SLIs are computed here from the same numbers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from .snapshot import Metric

DROP_REASONS = ("budget", "ttl")     # the data plane's reasons to drop (plane.py)

if TYPE_CHECKING:  # pragma: no cover
    from ..host import SiteHost

STATE_VALUE = {"online": 2, "degraded": 1, "offline": 0}


def dataplane(plane: Any, host: "SiteHost") -> list[Metric]:
    d = plane.describe()
    status = plane.sink_status()
    m = [Metric("wal_committed_readings_total", d["committed_readings"], kind="counter",
                help="readings committed to the WAL (acknowledged to their producers)"),
         Metric("wal_unrouted_readings_total", d.get("unrouted", 0), kind="counter",
                help="readings no route matched"),
         Metric("privacy_withheld_total", d.get("privacy_withheld", 0), kind="counter",
                help="restricted readings kept from non-local sinks")]
    for prio, s in d["stored"].items():
        m.append(Metric("wal_depth_records", s["records"], {"priority": prio}, help="records stored in the WAL"))
        m.append(Metric("wal_depth_readings", s["readings"], {"priority": prio}, help="readings stored in the WAL"))
        m.append(Metric("wal_bytes", s["bytes"], {"priority": prio}, help="bytes of readings stored in the WAL"))
    # Every (priority, reason) from the start, at 0 until something is dropped: Prometheus's
    # increase() cannot see the first drop of a series that appears with it.
    drops = {f"{prio}/{reason}": 0 for prio in d["stored"] for reason in DROP_REASONS}
    drops.update(d.get("drops", {}))
    for key, n in drops.items():
        prio, _, reason = str(key).partition("/")
        m.append(Metric("drops_total", n, {"priority": prio, "reason": reason or "unknown"}, "counter",
                        "readings dropped by policy (disk budget, TTL), by priority and reason"))
    for outcome, n in d.get("ingress_dead_letters", {}).items():
        m.append(Metric("ingress_dead_letters_total", n, {"outcome": outcome}, "counter",
                        "received payloads no adapter could decode, by what became of them "
                        "(stored in the dead-letter table, removed by its cap, lost, write failures)"))
    for kind, n in d.get("dead_letters", {}).items():
        m.append(Metric("dead_letters", n, {"kind": kind}, help="dead letters in the table now, by kind (sink: "
                        "readings a sink refused for good; ingress: payloads an adapter could not decode)"))
    for outcome, n in d.get("ingress_replays", {}).items():
        m.append(Metric("ingress_replays_total", n, {"outcome": outcome}, "counter",
                        "ingress dead letters handed back to their entry (dlq replay), by what became of them "
                        "(decoded, failed_again, untried)"))
    for route in list(getattr(getattr(plane, "table", None), "routes", [])):
        for k, step in enumerate(route.steps):
            labels = {"route": str(route.name), "step": f"{k}:{type(step).__name__}"}
            ins = route.step_in[k] if k < len(route.step_in) else 0
            outs = route.step_out[k] if k < len(route.step_out) else 0
            m.append(Metric("processor_in_total", ins, labels, "counter", "readings into a route's processor step"))
            m.append(Metric("processor_dropped_total", max(0, ins - outs), labels, "counter",
                            "readings a processor step did not pass on (deadband suppressions, window inputs, ...)"))
    delivered_remote = 0
    for sink, s in d["sinks"].items():
        st = status.get(sink, {})
        labels = {"sink": sink}
        m += [Metric("sink_delivered_readings_total", s["delivered_readings"], labels, "counter",
                     "readings the sink acknowledged"),
              Metric("sink_delivered_batches_total", s["delivered_batches"], labels, "counter", "batches delivered"),
              Metric("sink_failures_total", s["failures"], labels, "counter", "failed delivery attempts (retried)"),
              Metric("sink_dead_letters_total", s["dead_letters"], labels, "counter",
                     "messages the sink refused permanently (dead-letter table)"),
              Metric("sink_backlog_records", s["backlog"], labels, help="records waiting for this sink"),
              Metric("sink_connectivity", STATE_VALUE.get(s["state"], 0), labels,
                     help="2 online, 1 degraded, 0 offline"),
              Metric("sink_duplicates_total", st.get("duplicates", 0), labels, "counter",
                     "deliveries of readings the sink had already acknowledged (dedup hits)")]
        done = s["delivered_batches"]
        m.append(Metric("sli_delivery_ratio", done / (done + s["backlog"]) if done + s["backlog"] else 1.0, labels,
                        help="SLI: share of the batches routed to the sink that it has delivered"))
        if not s.get("local"):
            delivered_remote += s["delivered_readings"]
    produced = host.pipeline.readings_in
    if produced:
        m.append(Metric("sli_data_reduction_ratio", delivered_remote / produced,
                        help="SLI: readings leaving the site / readings read from devices (lower = more reduction)"))
    det = host.services.get("detectors")
    for sink, lag in (getattr(det, "sync_lag", None) or {}).items():
        m.append(Metric("sli_sync_lag_seconds", lag, {"sink": sink},
                        help="SLI: age of the oldest reading the sink has not acknowledged"))
    return m


def _count(value: Any) -> float:
    # Some services keep the recent cases themselves (a list), others a number.
    return float(len(value)) if isinstance(value, (list, tuple, dict)) else float(value or 0)


def api(server: Any, host: "SiteHost") -> list[Metric]:
    d = server.describe()
    conns = d.get("connections", [])
    m = [Metric("ws_clients", len(conns), help="open WebSocket connections"),
         Metric("ws_slow_disconnects_total", _count(d.get("slow_disconnects", 0)), kind="counter",
                help="clients disconnected for not reading their queue"),
         Metric("ws_login_refused_total", _count(d.get("login_refused", 0)), kind="counter",
                help="logins refused (bad token or rate limit)")]
    depths = [c.get("queued", c.get("queue", 0)) for c in conns]
    m.append(Metric("ws_queue_depth_max", max(depths) if depths else 0, help="deepest outgoing queue of any client"))
    return m


def rollouts(engine: Any, host: "SiteHost") -> list[Metric]:
    m = []
    ok = failed = 0
    for r in engine.status():
        labels = {"rollout": str(r["id"])}
        total = r.get("total") or 0
        m.append(Metric("rollout_progress_ratio", (r.get("executed", 0) / total) if total else 0.0, labels,
                        help="share of a rollout's devices that have finished"))
        m.append(Metric("rollout_failed_devices", r.get("failed", 0), labels, help="devices that failed or rolled back"))
        ok += r.get("succeeded", 0)
        failed += r.get("failed", 0)
    if ok + failed:
        m.append(Metric("sli_rollout_success_ratio", ok / (ok + failed),
                        help="SLI: devices updated successfully / devices that finished an update"))
    return m


EXPORTERS: dict[str, Callable[[Any, "SiteHost"], list[Metric]]] = {
    "dataplane": dataplane, "api": api, "rollouts": rollouts,
}
