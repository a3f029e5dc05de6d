"""The `history` sink: the site's own time series (raw, hourly, daily) in a local SQLite file.

The embedded default destination: `make run` needs no broker. The data plane
delivers to it like any sink (its own cursor, at-least-once; duplicates are
ignored by msgId); the WebSocket API reads it through `host.services["history"]`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import attrs
import trio

from sitegate.hookspecs import hookimpl
from sitegate.model import Batch
from sitegate.structure import Duration

from .store import DAY, HistoryStore


@attrs.frozen
class HistoryConfig:
    """Where the history lives and how long each tier is kept."""

    config_version = 1

    path: str = ""                              # default: history.sqlite in the entry's state folder
    raw_keep: Duration = Duration(7 * DAY)
    hourly_keep: Duration = Duration(90 * DAY)
    daily_keep: Duration = Duration(5 * 365 * DAY)


class HistorySink:
    """The Sink the data plane delivers to. Local: restricted points may be stored raw here."""

    local = True

    def __init__(self, store: HistoryStore):
        self.store = store

    @property
    def duplicates(self) -> int:
        """Readings delivered again that the store already had (dedup hits, sitegate_sink_duplicates_total)."""
        return self.store.duplicates

    async def deliver(self, batches: Sequence[Batch]) -> None:
        store = self.store

        def work() -> None:
            store.write(batches)
            store.maintain()
        await trio.to_thread.run_sync(work)


def resolution_name(resolution: Any) -> str:
    """The WebSocket API's `resolution` (seconds per row, or None for raw) or a name, as a store resolution."""
    if resolution is None:
        return "raw"
    if isinstance(resolution, str):
        return resolution
    seconds = float(resolution)
    return "day" if seconds >= DAY else "hour" if seconds >= 3600 else "raw"


class HistoryQuery:
    """What `entry.data["history"]` holds for the WebSocket API: an awaitable query in a worker thread.

    Rows are dicts: raw {ts, value, quality}; hour/day {ts, count, min, max, avg, first, last}.
    """

    def __init__(self, store: HistoryStore):
        self.store = store

    async def query(self, device: str, point: str, start: float, end: float, resolution: Any = None,
                    limit: int = 10_000) -> list[dict[str, Any]]:
        store, res = self.store, resolution_name(resolution)
        result = await trio.to_thread.run_sync(lambda: store.query(device, point, start, end, res, limit))
        return result["rows"]


class HistoryService:
    """What `host.services["history"]` holds: the history stores of the site, by entry id."""

    def __init__(self) -> None:
        self.stores: dict[str, HistoryStore] = {}

    def store(self, entry_id: str | None = None) -> HistoryStore:
        if entry_id is None:
            if not self.stores:
                raise LookupError("no history entry is loaded")
            return next(iter(self.stores.values()))
        return self.stores[entry_id]

    async def query(self, device: str, point: str, start: float, end: float, resolution: str = "auto",
                    limit: int = 10_000, entry_id: str | None = None) -> dict[str, Any]:
        """See HistoryStore.query; runs in a worker thread."""
        store = self.store(entry_id)
        return await trio.to_thread.run_sync(lambda: store.query(device, point, start, end, resolution, limit))


@hookimpl
def config_schema() -> type:
    return HistoryConfig


@hookimpl
async def setup_entry(entry) -> None:
    cfg: HistoryConfig = entry.config
    path = Path(cfg.path) if cfg.path else entry.state_dir / "history.sqlite"
    sync = "FULL" if entry.host.loaded.site.durability == "power-loss" else "NORMAL"
    store = await trio.to_thread.run_sync(lambda: HistoryStore(
        path, raw_keep=float(cfg.raw_keep), hourly_keep=float(cfg.hourly_keep), daily_keep=float(cfg.daily_keep),
        synchronous=sync))
    entry.data["history_store"] = store
    entry.data["history"] = HistoryQuery(store)
    service = entry.host.services.setdefault("history", HistoryService())
    service.stores[entry.id] = store

    def cleanup() -> None:
        service.stores.pop(entry.id, None)
        store.close()
    entry.on_unload(cleanup)


@hookimpl
def sink_factory(entry):
    return HistorySink(entry.data["history_store"])


@hookimpl
def entry_diagnostics(entry) -> dict[str, Any]:
    store: HistoryStore | None = entry.data.get("history_store")
    if store is None:
        return {}
    return {"path": str(store.path), "written": store.written, "too_old": store.too_old}
