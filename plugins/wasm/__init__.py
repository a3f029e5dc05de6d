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


@hookimpl
def cli_commands():
    from sitegate.plugins import CliCommand

    from . import cli

    return {
        "publish": CliCommand("publish", "sign a module (.wasm or .wat) into a registry as its publisher",
                              cli.publish_args, cli.publish),
        "promote": CliCommand("promote", "make a route's shadow module the active one (edits the site file)",
                              cli.promote_args, cli.promote),
        "run": CliCommand("run", "try a local module on a few readings (unsigned, at your desk)",
                          cli.run_args, cli.run),
    }
