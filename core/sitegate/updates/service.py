"""The rollout engine as a core service of a running site (see runner.SERVICES).

`start_rollouts(host, nursery)` opens <state_dir>/updates.sqlite, finds update
handlers in loaded entries, sends rollout.* events to the site's event bus, sets
the desired config of the twins a config rollout reaches (host.services["twins"]) and
puts the engine in ``host.services["rollouts"]`` for the WebSocket API.
"""

from __future__ import annotations

from typing import Any

import trio

from .rollout import RolloutEngine
from .store import RolloutStore


def handler_lookup(host: Any):
    def handler_for(entry_id: str) -> Any:
        runner = host.runners.get(entry_id)
        if runner is None or runner.ctx.state.label != "loaded":
            return None   # not loaded (yet): the engine asks again at its next poll
        return runner.ctx.data.get("update_handler")
    return handler_for


async def start_rollouts(host: Any, nursery: trio.Nursery) -> RolloutEngine:
    if isinstance(host.services.get("rollouts"), RolloutEngine):
        return host.services["rollouts"]   # already running for this site
    durability = getattr(host.loaded.site, "durability", "process-crash")
    store = RolloutStore(host.state_dir, durability=durability)
    engine = RolloutEngine(store, handler_lookup(host), emit=host.events.emit,
                           twins=lambda: host.services.get("twins"))
    host.services["rollouts"] = engine
    await nursery.start(engine.run)
    return engine
