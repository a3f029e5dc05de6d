"""Seeing a running site: Prometheus metrics, health, diagnostics and silent-failure detectors.

Nothing here touches the hot path: metrics are read from the host's counters
at scrape time, on the trio thread, and the HTTP endpoint runs in a thread
of its own.
"""
