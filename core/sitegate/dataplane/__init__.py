"""The durable data plane: routes, processors, the SQLite WAL, per-sink delivery, retention.

Readings flow: pipeline.submit → stage.py (routes, processors) → wal.py (group
commit) → delivery.py (one cursor per sink and priority) → retention.py.
See docs/delivery.md for the guarantees.
"""

from .plane import DataPlane, start_dataplane

__all__ = ["DataPlane", "start_dataplane"]
