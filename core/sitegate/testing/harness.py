"""Running a real site inside a test: a SiteHost from a YAML string, and waiting on conditions.

Used by the core's own tests and by plugin authors (through the pytest
fixtures in sitegate.testing). Nothing is mocked: the entries run their real
setup in a real trio nursery; only the plugin source is a dev folder.
"""

from __future__ import annotations

import contextlib
import textwrap
from pathlib import Path
from typing import AsyncIterator, Callable, Iterable

import trio

from ..config import load_site
from ..host import SiteHost
from ..loader import DevFolderSource

REPO = Path(__file__).resolve().parents[3]
FIRST_PARTY_PLUGINS = REPO / "plugins"

# Fast supervision for tests: retries and shutdown measured in milliseconds, set through the
# site file's runtime section (configuration, not monkeypatching).
FAST_RUNTIME = """
runtime:
  retry_backoff: [0.05, 0.1, 0.2, 0.4, 0.8]
  retry_jitter: 0
  shutdown_timeout: 2s
  unload_timeout: 0.5s
"""


def write_site(folder: Path, text: str, *, name: str = "site.yaml", secrets: dict[str, str] | None = None,
               fast: bool = True) -> Path:
    text = textwrap.dedent(text)
    if fast and "runtime:" not in text:
        text += FAST_RUNTIME
    # Tests run side by side: every listening port is a free one unless the test says otherwise.
    if "\napi:" not in text:
        text += "api: {port: 0}\n"
    if "\nobservability:" not in text:
        text += "observability: {port: 0}\n"
    if "state_dir" not in text:
        text = text.replace("runtime:\n", f"runtime:\n  state_dir: {folder / '.sitegate'}\n", 1)
    path = folder / name
    path.write_text(text)
    if secrets:
        import yaml
        (folder / "secrets.yaml").write_text(yaml.safe_dump(secrets))
    return path


@contextlib.asynccontextmanager
async def running_site(folder: Path, text: str | None = None, *, path: Path | None = None,
                       plugin_dirs: Iterable[Path] = (), secrets: dict[str, str] | None = None,
                       fast: bool = True, services: bool = True,
                       clock: Callable[[], float] | None = None) -> AsyncIterator[SiteHost]:
    """Run a site for the duration of the block; shuts it down (unloading every entry) afterwards.

    `clock` replaces the site's wall clock (entries' `entry.clock()`), e.g. a `ManualClock`."""
    if path is None:
        assert text is not None, "give the site as text or as path"
        path = write_site(Path(folder), text, secrets=secrets, fast=fast)
    source = DevFolderSource(FIRST_PARTY_PLUGINS, *plugin_dirs, warn=False)
    host = SiteHost(load_site(path), source, **({"clock": clock} if clock is not None else {}))
    async with trio.open_nursery() as nursery:
        await nursery.start(host.run)
        if services:
            from ..runner import SERVICES
            for start in SERVICES:
                await start(host, nursery)
        try:
            yield host
        finally:
            with trio.CancelScope(shield=True):
                await host.shutdown()
            nursery.cancel_scope.cancel()


async def wait_for(condition: Callable[[], object], timeout: float = 5.0, *, what: str = "condition",
                   poll: float = 0.005) -> object:
    """Wait until ``condition()`` is truthy and return it; fail with `what` after `timeout` seconds."""
    with trio.move_on_after(timeout):
        while True:
            value = condition()
            if value:
                return value
            await trio.sleep(poll)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


class Recorder:
    """Collects every batch accepted by a site's pipeline (a tap), per device."""

    def __init__(self, host: SiteHost):
        self.batches = []
        self.remove = host.pipeline.add_tap(self.batches.append)

    def readings(self, device: str | None = None) -> list[tuple[str, str, object, float]]:
        return [(b.device, p, v, t) for b in self.batches if device is None or b.device == device
                for p, v, t, _ in b.rows()]

    def devices(self) -> set[str]:
        return {b.device for b in self.batches}
