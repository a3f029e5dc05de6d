"""Fixtures for the wasm tests: a recording context, unsigned example modules, a throwaway signed registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from sitegate.registry.keys import NaclSigner
from sitegate.registry.repository import Repository
from sitegate.structure import structure

from plugins.wasm.processor import WasmParams, WasmProcessor
from wasm_helpers import Ctx, ModuleLab, wasm_bytes, wat


@pytest.fixture
def ctx() -> Ctx:
    return Ctx()


@pytest.fixture
def dev():
    """dev(module file, **params) -> a WasmProcessor on an unsigned example module."""
    def make(name: str, ctx: Ctx | None = None, **params) -> WasmProcessor:
        p = structure({"module_path": str(wat(name)), "unsigned_dev": True, **params}, WasmParams)
        return WasmProcessor(p, ctx or Ctx())
    return make


@pytest.fixture
def lab(tmp_path: Path) -> ModuleLab:
    keys = {n: NaclSigner.generate(n) for n in ("root", "targets", "snapshot", "timestamp")}
    repo = Repository.init(tmp_path / "registry", root=[keys["root"]], root_threshold=1, targets=keys["targets"],
                           snapshot=keys["snapshot"], timestamp=keys["timestamp"])
    for publisher in ("acme", "other"):
        keys[publisher] = NaclSigner.generate(publisher)
        repo.add_publisher(publisher, keys[publisher].public_key, {s.keyid: s for s in keys.values()})
    lab = ModuleLab(repo, keys, tmp_path / "state")
    lab.publish("moving_average", "1.0.0", wasm_bytes("moving_average.wat"))
    lab.publish("threshold", "1.0.0", wasm_bytes("threshold.wat"))
    return lab
