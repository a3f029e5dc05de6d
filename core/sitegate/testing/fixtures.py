"""Test helpers for plugin authors beyond `running_site`: a controllable clock, a processor driver,
a sink recorder, adding an entry from a dict, and the pytest fixtures that hand them out.

Everything here drives the real code paths (the loader, the data plane, `host.apply`); nothing
is mocked except time, and time only where the site or processor reads `clock()`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import pytest
import trio
import yaml

from ..config import load_site
from ..host import SiteHost
from ..loader import DevFolderSource, Integration, Loader
from ..model import Batch, Event
from ..plugins import ProcessorContext
from ..structure import structure
from .harness import FIRST_PARTY_PLUGINS, running_site, wait_for


class ManualClock:
    """Wall-clock seconds that move only when the test says so: ``clock.advance(60)``.

    Pass it where sitegate takes a ``clock`` (a site in `clocked_site`, a `ProcessorDriver`):
    entries' ``entry.clock()``, processors' ``ctx.clock()`` and the data plane's flush read it.
    """

    def __init__(self, start: float | None = None):
        self.now = float(time.time() if start is None else start)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError(f"ManualClock.advance: time only moves forward, got {seconds!r} s")
        self.now += float(seconds)
        return self.now

    def set(self, when: float) -> float:
        if when < self.now:
            raise ValueError(f"ManualClock.set: {when!r} is before the current time {self.now!r}")
        self.now = float(when)
        return self.now


def load_integration(folder: Path | str) -> Integration:
    """Load the integration in `folder` (the folder holding manifest.json) exactly as a site would."""
    folder = Path(folder).resolve()
    if not (folder / "manifest.json").is_file():
        raise FileNotFoundError(f"{folder}: no manifest.json; give the integration's own folder")
    loader = Loader(DevFolderSource(folder.parent, warn=False))
    return loader.load_one(folder.name)


class ProcessorDriver:
    """One processor step outside a site: feed it readings, see what it passes and what it emits.

    ``ProcessorDriver(folder, "my_type", {"factor": 2})`` loads the integration, structures the
    parameters with its params class (errors name ``params.<field>``) and creates the processor
    with a context whose ``emit`` records into `events` and whose ``clock`` is `clock`.
    """

    def __init__(self, integration: Integration | Path | str, type_name: str,
                 params: Mapping[str, Any] | None = None, *, clock: ManualClock | None = None,
                 site: str = "test", route: str = "test"):
        if not isinstance(integration, Integration):
            integration = load_integration(integration)
        ptype = integration.processor_types.get(type_name)
        if ptype is None:
            raise KeyError(f"{integration.domain} provides no processor type {type_name!r}; "
                           f"it provides: {', '.join(sorted(integration.processor_types)) or 'none'}")
        self.clock = clock or ManualClock()
        self.events: list[Event] = []
        parsed = structure(dict(params or {}), ptype.params, path="params") if ptype.params else params
        ctx = ProcessorContext(site=site, route=route, emit=self.events.append, clock=self.clock)
        self.processor = ptype.create(parsed, ctx)

    def process(self, batch: Batch) -> Batch | None:
        return self.processor.process(batch)

    def feed(self, device: str, values: Mapping[str, Any], ts: float | None = None) -> list[tuple[str, Any, float, int]]:
        """Feed one sample of several points (at `ts`, default the clock); return the rows passed on."""
        out = self.process(Batch.of(device, dict(values), self.clock() if ts is None else ts))
        return [] if out is None else list(out.rows())

    def feed_series(self, device: str, point: str, series: Iterable[tuple[float, Any]]) -> list[tuple[float, Any]]:
        """Feed (ts, value) pairs one batch each; return the (ts, value) pairs passed on."""
        passed = []
        for ts, value in series:
            passed += [(t, v) for _, v, t, _ in self.feed(device, {point: value}, ts)]
        return passed

    def flush(self, now: float | None = None) -> list[Batch]:
        """Call the optional time-driven ``flush(now)`` (window closes, re-reports), at the clock's time."""
        flush = getattr(self.processor, "flush", None)
        return [] if flush is None else list(flush(self.clock() if now is None else now))


class SinkRecorder:
    """Records every batch the data plane hands to a sink entry's ``deliver`` (after it returned).

    ``rec = SinkRecorder(host, "uplink")``; then ``await rec.wait_readings(10)``. Only
    successful deliveries are recorded: a delivery that raised will be retried by the core.
    """

    def __init__(self, host: SiteHost, entry_id: str):
        sink = host.sinks.get(entry_id)
        if sink is None:
            raise KeyError(f"no sink is attached for entry {entry_id!r}; attached sinks: "
                           f"{', '.join(sorted(host.sinks)) or 'none'} (is the entry loaded and of kind sink?)")
        self.batches: list[Batch] = []
        self.calls = 0
        original = sink.deliver

        async def deliver(batches: Sequence[Batch]) -> None:
            self.calls += 1
            await original(batches)
            self.batches.extend(batches)

        # The data plane calls `self.sink.deliver(...)` on each delivery: an instance attribute wins.
        sink.deliver = deliver

    def readings(self, device: str | None = None) -> list[tuple[str, str, Any, float]]:
        return [(b.device, p, v, t) for b in self.batches if device is None or b.device == device
                for p, v, t, _ in b.rows()]

    async def wait_readings(self, n: int, timeout: float = 10.0) -> list[tuple[str, str, Any, float]]:
        await wait_for(lambda: len(self.readings()) >= n, timeout, what=f"{n} readings delivered to the sink")
        return self.readings()


async def add_entry(host: SiteHost, entry: Mapping[str, Any], *, timeout: float = 10.0) -> str:
    """Add an entry (``{"id": ..., "domain": ..., "config": {...}}``) to a running site by editing its
    site file and applying it, as an integrator would; returns the entry's state once it left setup."""
    if "id" not in entry or "domain" not in entry:
        raise ValueError(f"add_entry: an entry needs 'id' and 'domain', got keys {sorted(entry)}")
    path = Path(host.loaded.path)
    data = yaml.safe_load(path.read_text()) or {}
    data.setdefault("entries", []).append(dict(entry))
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    await host.apply(await trio.to_thread.run_sync(load_site, path))

    def settled():
        for info in host.entries():
            if info["id"] == entry["id"] and info["state"] not in ("not_loaded", "setup_in_progress"):
                return info["state"]
        return None
    return str(await wait_for(settled, timeout, what=f"entry {entry['id']!r} to finish its setup"))


def clocked_site(folder: Path, text: str, *, clock: ManualClock, plugin_dirs: Iterable[Path] = (),
                 services: bool = True):
    """Like `running_site`, with the site's wall clock replaced by `clock` (a `ManualClock`)."""
    return running_site(folder, text, plugin_dirs=plugin_dirs, services=services, clock=clock)


@pytest.fixture
def sitegate_clock() -> ManualClock:
    """A `ManualClock` starting at the current time."""
    return ManualClock()
