"""Helpers for the wasm tests: a recording processor context, the example WAT modules, a module lab."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import wasmtime

from sitegate.model import Event
from sitegate.registry.keys import NaclSigner
from sitegate.registry.modules import ModuleStore, publish_module
from sitegate.registry.repository import Repository

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "wasm"


@attrs.define
class Ctx:
    """A ProcessorContext that records events and has a settable clock (and, optionally, a module store)."""

    site: str = "t/wasm"
    route: str = "r1"
    events: list[Event] = attrs.Factory(list)
    now: float = 1_700_000_000.0
    modules: Any = None

    def emit(self, event: Event) -> None:
        self.events.append(event)

    def clock(self) -> float:
        return self.now

    def kinds(self, kind: str) -> list[Event]:
        return [e for e in self.events if e.kind == kind]


def wat(name: str) -> Path:
    return EXAMPLES / name


def wasm_bytes(name: str) -> bytes:
    return wasmtime.wat2wasm(wat(name).read_text())


@attrs.define
class ModuleLab:
    repo: Repository
    keys: dict[str, NaclSigner]
    state: Path

    @property
    def online(self) -> dict[str, NaclSigner]:
        return {s.keyid: s for n, s in self.keys.items() if n in ("snapshot", "timestamp")}

    def publish(self, name: str, version: str, data: bytes, publisher: str = "acme") -> str:
        path, _ = publish_module(self.repo, data, name, version, self.keys[publisher], self.online)
        return path

    def store(self) -> ModuleStore:
        return ModuleStore(self.state, self.repo.path, actor="test")
