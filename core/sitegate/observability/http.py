"""The operator's HTTP endpoint: /metrics (Prometheus text), /healthz (alive), /readyz (ready).

A WSGI app served by wsgiref in a daemon thread; each request asks the trio
thread for a fresh Snapshot, so the numbers are consistent and the event loop
is never read from another thread.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import TYPE_CHECKING, Callable, Iterable
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import trio
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import CollectorRegistry

from .snapshot import Snapshot, take

if TYPE_CHECKING:  # pragma: no cover
    from ..host import SiteHost

log = logging.getLogger(__name__)
PREFIX = "sitegate_"


class _Collector:
    def __init__(self, snapshot: Callable[[], Snapshot]):
        self.snapshot = snapshot

    def collect(self):
        families: dict[str, object] = {}
        bad: set[str] = set()
        for m in self.snapshot().metrics:
            if m.kind != "histogram" and not isinstance(m.value, (int, float)):
                bad.add(m.name)          # one exporter's mistake must not blank the whole scrape
                continue
            name = PREFIX + m.name
            if m.kind == "counter" and name.endswith("_total"):
                name = name[: -len("_total")]
            fam = families.get(name)
            if fam is None:
                cls = {"counter": CounterMetricFamily, "histogram": HistogramMetricFamily}.get(m.kind, GaugeMetricFamily)
                fam = families[name] = cls(name, m.help or name, labels=sorted(m.labels))
            values = [m.labels[k] for k in sorted(m.labels)]
            if m.kind == "histogram":
                fam.add_metric(values, [("+Inf" if b == float("inf") else repr(b), c) for b, c in m.buckets],
                               sum_value=float(m.value))
            else:
                fam.add_metric(values, float(m.value))
        if bad:
            fam = families.get(PREFIX + "exporter_errors") or GaugeMetricFamily(
                PREFIX + "exporter_errors", "metrics that could not be read", labels=["error", "service"])
            for name in sorted(bad):
                fam.add_metric(["not a number", name], 1.0)   # labels sorted: error, service
            families[PREFIX + "exporter_errors"] = fam
        return list(families.values())


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args):  # scrapes every few seconds would flood the log
        pass


def make_app(snapshot: Callable[[], Snapshot], diagnostics: Callable[[str | None], dict] | None = None):
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(snapshot))

    def app(environ, start_response) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        try:
            if path == "/metrics":
                body = generate_latest(registry)
                start_response("200 OK", [("Content-Type", "text/plain; version=0.0.4; charset=utf-8")])
                return [body]
            if path in ("/healthz", "/readyz"):
                snap = snapshot()
                if path == "/healthz":
                    status, doc = "200 OK", {"status": "alive", "site": snap.site}
                else:
                    status = "200 OK" if snap.ready else "503 Service Unavailable"
                    doc = {"status": "ready" if snap.ready else "not ready", "site": snap.site,
                           "problems": snap.not_ready,
                           "entries": {e["id"]: e["state"] for e in snap.entries}}
                start_response(status, [("Content-Type", "application/json")])
                return [json.dumps(doc).encode()]
        except Exception as exc:  # noqa: BLE001 - the site is shutting down or wedged
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
            return [f"unavailable: {type(exc).__name__}\n".encode()]
        if path.startswith("/diagnostics") and diagnostics is not None:
            # Loopback-only by default (observability.host); secrets are redacted in the bundle.
            target = path[len("/diagnostics"):].strip("/") or None
            try:
                doc = diagnostics(target)
            except KeyError as exc:
                start_response("404 Not Found", [("Content-Type", "application/json")])
                return [json.dumps({"error": str(exc.args[0])}).encode()]
            start_response("200 OK", [("Content-Type", "application/json")])
            return [json.dumps(doc, indent=1, default=str).encode()]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found: try /metrics, /healthz, /readyz or /diagnostics[/ENTRY|DEVICE]\n"]

    return app


class MetricsServer:
    def __init__(self, host: "SiteHost", address: str, port: int):
        self.host = host
        token = trio.lowlevel.current_trio_token()
        self._snapshot = lambda: trio.from_thread.run_sync(take, host, trio_token=token)

        def diagnostics(target):
            from ..diagnostics import bundle
            return trio.from_thread.run_sync(bundle, host, target, trio_token=token)

        self.server: WSGIServer = make_server(address, port, make_app(self._snapshot, diagnostics),
                                              handler_class=_Quiet)
        self.port = self.server.server_port
        self.thread = threading.Thread(target=self.server.serve_forever, name="sitegate-metrics", daemon=True)

    def start(self) -> None:
        self.thread.start()
        log.info("metrics and health on http://%s:%d/metrics (/healthz, /readyz)", *self.server.server_address[:2])

    async def aclose(self) -> None:
        await trio.to_thread.run_sync(self.server.shutdown)
        self.server.server_close()
