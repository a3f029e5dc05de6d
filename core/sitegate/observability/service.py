"""Starting observability beside a running site (registered in runner.SERVICES)."""

from __future__ import annotations

import logging

import trio

from ..model import Event, Severity

from .detectors import Detectors
from .http import MetricsServer

log = logging.getLogger(__name__)


async def start_observability(host, nursery: trio.Nursery) -> None:
    settings = host.loaded.site.observability
    if settings.metrics:
        try:
            server = MetricsServer(host, settings.host, settings.port)
        except OSError as exc:
            # The site runs on without its metrics endpoint: say so where an operator looks.
            log.error("metrics endpoint not started: cannot listen on %s:%s (%s); set observability.port "
                      "to a free port (0 picks one) or observability.metrics: false", settings.host, settings.port,
                      exc.strerror or exc)
            host.events.emit(Event("service.failed", "core", severity=Severity.CRITICAL,
                                   message=f"metrics endpoint: {exc}", data={"service": "metrics"}))
        else:
            server.start()
            host.services["metrics_http"] = server
            host.advertise("metrics", f"http://{settings.host}:{server.port}")
    nursery.start_soon(host.watchdog.measure_lag)
    detectors = Detectors(host, settings.detectors)
    host.services["detectors"] = detectors
    nursery.start_soon(detectors.run)
