"""The plugin contract: every hook an integration may implement.

This module is the one place a plugin author reads to know what they may
implement. Hooks are for wiring and lifecycle only: the core resolves each
integration's implementations once, when the integration loads, and calls
the callables they return (processors, sinks) on batches. No per-reading work
ever goes through a hook call.

An integration is a Python package with a ``manifest.json``; its
``__init__.py`` defines functions decorated with ``@hookimpl``. Hook names or
argument names that are not in this file are load errors naming the plugin.
Every implementation is optional; which ones make sense depends on the
manifest's ``kinds``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Awaitable, Callable, Mapping

import pluggy

if TYPE_CHECKING:  # pragma: no cover
    from .entries import EntryContext
    from .model import Command, CommandResult
    from .plugins import CliCommand, ProcessorType, Sink, UpdateHandler

PROJECT = "sitegate"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

# Hooks whose implementations must be `async def`: the core awaits them.
ASYNC_HOOKS = frozenset({"setup_entry", "unload_entry", "adapter_command"})


# --- entry lifecycle (every kind) -------------------------------------------------

@hookspec
def config_schema() -> type | None:
    """Return the attrs class an entry's ``config:`` mapping is structured into.

    Called once when the integration loads; ``sitegate check`` uses it to
    validate the site file without running anything. The class may set a
    ``config_version: ClassVar[int]`` (default 1): entries written for an older
    version go through `migrate_config` first. Return None to receive the raw
    mapping (discouraged: the integrator then gets no early errors).
    """


@hookspec
def migrate_config(from_version: int, config: dict[str, Any]) -> dict[str, Any]:
    """Upgrade an entry's raw config mapping from ``from_version`` by one or more versions.

    Called before structuring when the site file's ``version:`` for the entry is
    lower than the config class's ``config_version``. Return the migrated
    mapping; raise ``sitegate.errors.MigrationError`` if it cannot be migrated
    (the entry goes to ``migration_error``, the rest of the site runs).
    """


@hookspec
async def setup_entry(entry: "EntryContext") -> None:
    """Set up one configured entry. Must be ``async def``.

    Called when the site starts, when the entry is added or its config
    changed, and on each retry. ``entry.config`` is the structured config.
    Connect to the device or service here and start long-running work with
    ``entry.start_task(fn, ...)``: those tasks live in the entry's own nursery
    and are cancelled on unload. Register cleanup with ``entry.on_unload(cb)``
    (run in reverse order). Raise ``EntryNotReady`` when the peer is not
    reachable yet (the core retries with backoff 5, 10, 20, 40, 80 s plus
    jitter) and ``EntryError`` for a problem a retry will not fix. Return
    when the entry is ready; its state becomes ``loaded``.
    """


@hookspec
async def unload_entry(entry: "EntryContext") -> None:
    """Release what setup acquired before the entry's tasks are cancelled. Must be ``async def``.

    Called on unload, reload and shutdown, before the entry's nursery is
    cancelled and its ``on_unload`` callbacks run. Flush or close gracefully
    here; the core bounds the time this may take. Optional.
    """


@hookspec
def entry_diagnostics(entry: "EntryContext") -> dict[str, Any]:
    """Return a JSON-serialisable dict describing the entry's inner state for support.

    Called on demand (``sitegate diagnostics``, the WebSocket API). The core
    adds versions, state and counters, and redacts secrets from the whole
    bundle; still, do not put credentials here.
    """


@hookspec
def entry_metrics(entry: "EntryContext") -> Mapping[str, float]:
    """Return the entry's own numbers for Prometheus, as ``{name: value}``.

    Called at every scrape of ``/metrics`` (keep it cheap, no I/O). Names are
    ``[a-z0-9_]+`` (end counters in ``_total``); they are exported as
    ``sitegate_adapter_<name>{entry="<id>", domain="<domain>"}``. A fixed set of
    names: never one per reading, value or device.
    """


# --- adapter ----------------------------------------------------------------------

@hookspec
async def adapter_command(entry: "EntryContext", command: "Command") -> "CommandResult":
    """Carry out a command (``write`` a point, or an adapter-defined action) on a device.

    Called by the core when an operator or a rule commands a device this
    entry owns. Must be ``async def`` and return a ``CommandResult`` with
    status ``ack``, ``nack`` (``detail`` says why) or ``timeout`` within
    ``command.timeout`` seconds; never fire-and-forget.
    """


# --- processor --------------------------------------------------------------------

@hookspec
def processor_types() -> Mapping[str, "ProcessorType"]:
    """Return the processor types this integration provides, by the name used in routes.

    Called once when the integration loads. Each ``ProcessorType`` carries an
    attrs class for its parameters and a ``create(params, ctx)`` factory; the
    core creates one processor per route step and calls its ``process(batch)``
    on batches (see ``sitegate.plugins.Processor``).
    """


# --- sink -------------------------------------------------------------------------

@hookspec
def sink_factory(entry: "EntryContext") -> "Sink":
    """Return the sink object that delivers batches for this entry.

    Called once after ``setup_entry`` succeeded for an entry whose
    integration has kind ``sink``. The core calls ``await sink.deliver(batches)``
    from the entry's own delivery cursor (see ``sitegate.plugins.Sink``).
    """


# --- update handler ---------------------------------------------------------------

@hookspec
def update_handler(entry: "EntryContext") -> "UpdateHandler":
    """Return the update handler that stages, activates, checks and commits updates on devices.

    Called once after ``setup_entry`` for an entry whose integration has kind
    ``update_handler`` (see ``sitegate.plugins.UpdateHandler``).
    """


# --- tools for integrators ---------------------------------------------------------

@hookspec
def cli_commands() -> Mapping[str, "CliCommand"]:
    """Return extra command-line verbs, offered as ``sitegate <domain> <verb> ...``.

    Called when a user runs ``sitegate <your domain> ...``; the integration is
    loaded from the signed registry (or ``--dev-plugins``) first, exactly as a
    site would load it. Each ``sitegate.plugins.CliCommand`` adds its arguments
    to an argparse parser and runs synchronously, returning an exit status.
    For tools such as browsing a server or making certificates.
    """


HOOK_NAMES = frozenset(
    name for name, value in dict(globals()).items()
    if callable(value) and hasattr(value, f"{PROJECT}_spec")
)
