"""`sitegate run` as a user runs it: from the signed registry, live edits, SIGHUP, SIGTERM within its bound."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

SITE = """\
site: e2e
api: {{port: 0}}
observability: {{port: 0}}
runtime:
  state_dir: {state}
  shutdown_timeout: 5s
entries:
  - {{id: steady, domain: simulator, config: {{interval: 50ms}}}}
  - {{id: changing, domain: simulator, config: {{interval: 50ms, seed: 1}}}}
"""


@pytest.fixture(scope="session")
def signed_registry():
    """The development registry with every first-party plugin, built as `make registry` does."""
    if not (REPO / "registry" / "metadata" / "timestamp.json").exists():
        subprocess.run([sys.executable, "-m", "sitegate.registry.devpublish", "plugins", "registry"],
                       cwd=REPO, check=False, capture_output=True, timeout=300)
    return REPO / "registry"


class Lines:
    """The process's output, read in a thread so the test can wait on a line with a deadline."""

    def __init__(self, proc: subprocess.Popen):
        self.q: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, args=(proc,), daemon=True).start()

    def _pump(self, proc):
        for line in proc.stdout:
            self.q.put(line)

    def wait_for(self, text: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.q.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            self.seen.append(line)
            if text in line:
                return line
        raise AssertionError(f"no line containing {text!r} within {timeout} s; output:\n" + "".join(self.seen))


def test_run_applies_edits_live_and_stops_within_bound(tmp_path, signed_registry):
    site = tmp_path / "site.yaml"
    site.write_text(SITE.format(state=tmp_path / "state"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "sitegate.cli", "run", str(site), "--registry", str(signed_registry)],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1"))
    out = Lines(proc)
    try:
        out.wait_for("applied: added 2, removed 0, reloaded 0, unchanged 0", timeout=60)
        assert not any("UNSIGNED" in l for l in out.seen), "the default must be the signed registry"
        # An edit of the file reloads only the changed entry.
        time.sleep(0.05)  # distinct mtime on coarse filesystems
        site.write_text(site.read_text().replace("seed: 1", "seed: 2"))
        out.wait_for("applied: added 0, removed 0, reloaded 1, unchanged 1")
        assert any("entry changing: loaded -> unload_in_progress" in l for l in out.seen)
        assert not any("entry steady: loaded -> unload_in_progress" in l for l in out.seen)
        # A broken edit is reported and the running site keeps going.
        site.write_text(site.read_text().replace("interval: 50ms, seed: 2", "interval: [oops"))
        out.wait_for("not valid; keeping the running configuration")
        site.write_text(SITE.format(state=tmp_path / "state").replace("seed: 1", "seed: 2"))
        proc.send_signal(signal.SIGHUP)
        out.wait_for("SIGHUP: re-applying")
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    assert took < 5.0, f"shutdown took {took:.1f} s, bound is 5 s"


async def test_routes_with_processors_run_from_the_signed_registry(tmp_path, signed_registry):
    """Processor integrations named only in routes are installed and verified like entry domains."""
    import argparse

    import trio

    from sitegate.cli.common import plugin_source_from_args
    from sitegate.config import load_site
    from sitegate.host import SiteHost
    from sitegate.runner import SERVICES
    from sitegate.testing import wait_for

    site = tmp_path / "site.yaml"
    site.write_text(f"""
site: e2e
runtime: {{state_dir: {tmp_path / 'state'}}}
api: {{port: 0}}
observability: {{port: 0}}
entries:
  - {{id: sim, domain: simulator, config: {{interval: 20ms}}}}
  - {{id: hist, domain: history}}
routes:
  - {{from: ["sim.*/temperature"], through: [{{deadband: {{abs: 0.01}}}}, {{window: {{every: 1s, keep: [avg]}}}}], to: [hist]}}
""")
    args = argparse.Namespace(site=site, dev_plugins=[], registry=signed_registry, state=None)
    source = plugin_source_from_args(args)
    assert getattr(source, "verified", False)
    host = SiteHost(load_site(site), source)
    async with trio.open_nursery() as nursery:
        await nursery.start(host.run)
        for start in SERVICES:
            await start(host, nursery)
        await wait_for(lambda: host.services["dataplane"].sink_status().get("hist", {}).get("delivered", 0) > 0,
                       timeout=30, what="window averages delivered to history")
        assert {"deadband", "window"} <= set(host.loader.loaded)
        await host.shutdown()
        nursery.cancel_scope.cancel()


def test_a_second_run_of_the_same_site_is_refused_and_the_first_is_untouched(tmp_path, signed_registry):
    import json
    site = tmp_path / "site.yaml"
    site.write_text(SITE.format(state=tmp_path / "state"))
    argv = [sys.executable, "-m", "sitegate.cli", "run", str(site), "--registry", str(signed_registry)]
    first = subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             env=dict(os.environ, PYTHONUNBUFFERED="1"))
    out = Lines(first)
    try:
        out.wait_for("site e2e running with", timeout=60)
        runtime = json.loads((tmp_path / "state" / "runtime.json").read_text())
        assert runtime["pid"] == first.pid and runtime["api"].startswith("ws://127.0.0.1:")
        second = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert second.returncode == 1
        assert f"already in use by another sitegate (pid {first.pid}) running site 'e2e'" in second.stdout
        # The running site's runtime.json still points at it: `sitegate status` keeps working.
        assert json.loads((tmp_path / "state" / "runtime.json").read_text()) == runtime
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=15) == 0
    finally:
        if first.poll() is None:
            first.kill()
    # Stopped: the folder is free again.
    again = subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        Lines(again).wait_for("applied: added 2", timeout=60)
    finally:
        again.send_signal(signal.SIGTERM)
        again.wait(timeout=15)
