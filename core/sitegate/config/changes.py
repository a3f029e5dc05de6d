"""What applying a site would change: fingerprints of entries and routes, and the plan.

A running site writes `applied_state` to ``<state_dir>/applied.json``; `sitegate
diff` and the runtime's reload both call `plan_changes` with it, so what diff
shows is what run does. Fingerprints hash secrets in but never store them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from ..structure import converter
from .schema import EntrySpec, Site

if TYPE_CHECKING:  # pragma: no cover
    from .loading import LoadedSite

APPLIED_FILE = "applied.json"
DEFAULT_STATE_DIR = ".sitegate"


def _digest(value: Any) -> str:
    # Canonical JSON: sorted keys, no spaces; values YAML may produce (dates) hash as text.
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def entry_fingerprint(spec: EntrySpec) -> str:
    """Changes exactly when the entry must be reloaded: domain, config version, config or disabled changed."""
    return _digest({"domain": spec.domain, "version": spec.version, "config": spec.config,
                    "disabled": spec.disabled})


def routes_fingerprint(site: Site) -> str:
    return _digest(converter.unstructure(site.routes))


def applied_state(site: Site) -> dict[str, Any]:
    """What a running site records in applied.json (fingerprints only: no config, no secrets)."""
    return {"site": site.site,
            "entries": {e.id: entry_fingerprint(e) for e in site.entries},
            "routes": routes_fingerprint(site)}


@attrs.frozen
class Changes:
    """Entry ids by what applying a site does to them, in site-file order (removed: in old order)."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    reloaded: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    routes_changed: bool = False

    @property
    def any(self) -> bool:
        return bool(self.added or self.removed or self.reloaded or self.routes_changed)


def plan_changes(old: dict[str, Any] | None, new_site: Site) -> Changes:
    """Compare an applied state (None: nothing running) with `new_site`."""
    old_entries: dict[str, str] = dict((old or {}).get("entries") or {})
    added, reloaded, unchanged = [], [], []
    for spec in new_site.entries:
        if spec.id not in old_entries:
            added.append(spec.id)
        elif old_entries[spec.id] != entry_fingerprint(spec):
            reloaded.append(spec.id)
        else:
            unchanged.append(spec.id)
    new_ids = {e.id for e in new_site.entries}
    removed = [i for i in old_entries if i not in new_ids]
    if old is None:
        routes_changed = bool(new_site.routes)
    else:
        routes_changed = old.get("routes") != routes_fingerprint(new_site)
    return Changes(tuple(added), tuple(removed), tuple(reloaded), tuple(unchanged), routes_changed)


def state_dir_for(loaded: "LoadedSite") -> Path:
    """``runtime.state_dir`` (relative to the site file's folder) or ``.sitegate/`` beside the site file."""
    configured = loaded.site.runtime.state_dir
    base = Path(loaded.path).parent
    if not configured:
        return base / DEFAULT_STATE_DIR
    path = Path(configured).expanduser()
    return path if path.is_absolute() else base / path


def read_applied(state_dir: Path) -> dict[str, Any] | None:
    """The applied state a running (or last run) site left in `state_dir`, or None if there is none."""
    path = Path(state_dir) / APPLIED_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read the applied state: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("entries", {}), dict):
        raise ValueError(f"{path}: not an applied state (expected {{site, entries, routes}})")
    return data
