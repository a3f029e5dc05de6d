"""End to end from the signed registry: a site whose plugins and whose WASM module all come
verified from one registry runs the module; the same site with the module tampered leaves
the route out with `route.error`, and nothing of the module runs."""

from __future__ import annotations

from pathlib import Path

import trio

from sitegate.config import load_site
from sitegate.host import SiteHost
from sitegate.registry.artifact import build_artifact
from sitegate.registry.source import RegistrySource
from sitegate.testing import wait_for
from sitegate.testing.harness import write_site

PLUGINS = Path(__file__).resolve().parents[2]

SITE = """
site: t/signed-wasm
plugins: {simulator: "", wasm: ""}
entries:
  - id: sim
    domain: simulator
    config:
      interval: 10ms
      points: [{name: temp, shape: sine, amplitude: 10, offset: 20, period: 1}]
routes:
  - name: averaged
    from: ["sim.*/temp"]
    through: [{wasm: {module: acme/moving_average, version: "1.0.0", config: {window: 3}}}]
"""


def publish_plugins(lab) -> None:
    for domain in ("simulator", "wasm"):
        _, data = build_artifact(PLUGINS / domain)
        lab.repo.publish(data, lab.keys["acme"], lab.online)


def make_host(lab, tmp_path) -> SiteHost:
    path = write_site(tmp_path, SITE)
    return SiteHost(load_site(path), RegistrySource(lab.repo.path, lab.state, {"simulator": "", "wasm": ""}))


async def test_signed_module_runs_in_a_site_loaded_from_the_registry(lab, tmp_path):
    publish_plugins(lab)
    host = make_host(lab, tmp_path)
    async with trio.open_nursery() as nursery:
        await nursery.start(host.run)
        try:
            (route,) = host.services["dataplane"].table.routes
            (step,) = route.steps
            assert step.label == "acme/moving_average 1.0.0"
            await wait_for(lambda: step.stats()["readings_out"] >= 5, 10, what="readings through the signed module")
        finally:
            with trio.CancelScope(shield=True):
                await host.shutdown()
            nursery.cancel_scope.cancel()


async def test_tampered_module_leaves_the_route_out(lab, tmp_path):
    publish_plugins(lab)
    blob = next((lab.repo.targets_dir / "plugins" / "acme").glob("*.moving_average-1.0.0.wasm"))
    blob.write_bytes(blob.read_bytes()[:-1] + b"\x00")
    host = make_host(lab, tmp_path)
    async with trio.open_nursery() as nursery:
        await nursery.start(host.run)
        try:
            assert host.services["dataplane"].table.routes == []
            (err,) = [e for e in host.events.recent if e.kind == "route.error"]
            assert "wasm module 'acme/moving_average': refused (artifact-hash)" in err.message
        finally:
            with trio.CancelScope(shield=True):
                await host.shutdown()
            nursery.cancel_scope.cancel()
