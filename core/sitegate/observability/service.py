"""Starting observability beside a running site (registered in runner.SERVICES)."""

from __future__ import annotations

import trio

from .detectors import Detectors
from .http import MetricsServer


async def start_observability(host, nursery: trio.Nursery) -> None:
    settings = host.loaded.site.observability
    if settings.metrics:
        server = MetricsServer(host, settings.host, settings.port)
        server.start()
        host.services["metrics_http"] = server
        host.advertise("metrics", f"http://{settings.host}:{server.port}")
    nursery.start_soon(host.watchdog.measure_lag)
    detectors = Detectors(host, settings.detectors)
    host.services["detectors"] = detectors
    nursery.start_soon(detectors.run)
