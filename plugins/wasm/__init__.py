"""The `wasm` processor: run signed WebAssembly modules on batches, with fuel, memory and time budgets.

processor.py is the route step, runtime.py the sandbox, abi.py the memory layout,
shadow.py shadow mode; docs/wasm-processors.md is the guide for integrators and module authors.
"""

from __future__ import annotations

from sitegate.hookspecs import hookimpl
from sitegate.plugins import ProcessorType

from .processor import WasmParams, create


@hookimpl
def processor_types():
    return {"wasm": ProcessorType("wasm", WasmParams, create,
                                  "run a signed WebAssembly module on each batch, under fuel/memory/time budgets")}
