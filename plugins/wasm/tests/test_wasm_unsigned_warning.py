"""The loud UNSIGNED warning of `unsigned_dev: true`: once per step load, naming every unsigned module."""

from __future__ import annotations

import logging

from sitegate.structure import structure

from plugins.wasm.processor import WasmParams, WasmProcessor
from wasm_helpers import Ctx, wat


def unsigned_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "UNSIGNED" in r.getMessage()]


def test_an_active_module_and_its_shadow_from_one_file_warn_once_per_load(dev, caplog):
    caplog.set_level(logging.WARNING)
    path = wat("moving_average.wat")
    dev("moving_average.wat", Ctx(route="smoothed"), config={"window": 2},
        shadow={"module_path": str(path), "config": {"window": 3}})
    assert unsigned_lines(caplog) == [
        f"!!! route smoothed runs an UNSIGNED WebAssembly module from {path} and an UNSIGNED shadow candidate "
        "from the same file (unsigned_dev: true) — development only, never in the field !!!"]
    dev("moving_average.wat", Ctx(route="smoothed"), config={"window": 2})      # loaded again (a route edit)
    assert len(unsigned_lines(caplog)) == 2 and "shadow" not in unsigned_lines(caplog)[1]


def test_a_shadow_from_another_file_is_named_in_the_same_line(dev, caplog):
    caplog.set_level(logging.WARNING)
    dev("moving_average.wat", Ctx(route="r"), config={"window": 2},
        shadow={"module_path": str(wat("threshold.wat")), "config": {}})
    (line,) = unsigned_lines(caplog)
    assert f"module from {wat('moving_average.wat')} and an UNSIGNED shadow candidate from {wat('threshold.wat')}" in line


def test_signed_modules_do_not_warn(lab, caplog):
    caplog.set_level(logging.WARNING)
    p = structure({"module": "acme/moving_average", "version": "1.0.0", "config": {"window": 2},
                   "shadow": {"module": "acme/moving_average", "version": "1.0.0"}}, WasmParams)
    WasmProcessor(p, Ctx(modules=lab.store()))
    assert unsigned_lines(caplog) == []
