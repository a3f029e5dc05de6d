"""Which other site a device's readings came from, for fog gateways.

The adapter notes it when it ingests another sitegate's uplink; the sink then keeps
that site in the msgId it publishes, so an edge reading keeps its original id
through the fog. Persisted beside the site's state so a restart keeps it.
"""

from __future__ import annotations

import json
import weakref
from pathlib import Path
from typing import Any

_books: "weakref.WeakKeyDictionary[Any, OriginBook]" = weakref.WeakKeyDictionary()


class OriginBook:
    def __init__(self, path: Path):
        self.path = path
        try:
            self.sites: dict[str, str] = json.loads(path.read_text())
        except (OSError, ValueError):
            self.sites = {}

    def get(self, device: str, default: str) -> str:
        return self.sites.get(device, default)

    def note(self, device: str, site: str) -> None:
        if self.sites.get(device) != site:
            self.sites[device] = site
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.sites, sort_keys=True))
            tmp.replace(self.path)


def book_for(host: Any) -> OriginBook:
    """The one book of a running site (shared by its mqtt entries)."""
    book = _books.get(host)
    if book is None:
        book = _books[host] = OriginBook(Path(host.state_dir) / "mqtt-origins.json")
    return book
