"""What the core expects back from hooks that return objects: processors, sinks, update handlers.

hookspecs.py says when each is asked for; this module says what the returned
objects must do. Plain protocols: an integration implements them with any
class that has these methods.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol, Sequence, runtime_checkable

import attrs

from .model import Batch, Event


@attrs.frozen(slots=True)
class ProcessorContext:
    """Handed to a processor factory: where it runs and how to raise events."""

    site: str
    route: str                      # the route's name, for messages and metrics
    emit: Callable[[Event], None]   # raise an event (alerts take the fast path)
    clock: Callable[[], float]      # wall-clock seconds; controllable in tests
    modules: Any = None             # the signed registry's module store (WASM analytics), when there is one


@runtime_checkable
class Processor(Protocol):
    """One step of a route. State is kept per (device, point) inside the object."""

    def process(self, batch: Batch) -> Batch | None:
        """Return the readings to pass on (possibly fewer, changed, or None for none).

        Called on the trio thread with every batch routed through this step:
        keep it to plain loops over the batch's columns, never block.
        """

    # Optional: def flush(self, now: float) -> Sequence[Batch]
    #   called about once a second; returns readings produced by time rather
    #   than by input (window closes, max-silence re-reports).


@attrs.frozen(slots=True)
class ProcessorType:
    """A processor an integration offers under ``name`` for use in routes."""

    name: str
    params: type | None                              # attrs class for the step's parameters
    create: Callable[[Any, ProcessorContext], Processor]
    description: str = ""


class SinkError(Exception):
    """A delivery failed; `permanent` means retrying the same message will never succeed."""

    def __init__(self, message: str, *, permanent: bool = False):
        super().__init__(message)
        self.permanent = permanent


@runtime_checkable
class Sink(Protocol):
    """Northbound delivery for one sink entry.

    ``deliver`` gets batches in order per device and returns once the
    destination has accepted them (QoS 1 PUBACK, commit, ...). Raise
    ``SinkError`` to have them retried (``permanent=True`` sends them to the
    dead-letter table). The core advances this sink's cursor only after
    ``deliver`` returned.
    """

    async def deliver(self, batches: Sequence[Batch]) -> None: ...

    # Optional: `duplicates: int`, readings delivered again that the destination already had
    # (dedup by msgId): exported as sitegate_sink_duplicates_total and watched for replays.


@runtime_checkable
class UpdateHandler(Protocol):
    """Delivers a signed update to one device: stage, activate, check, commit or roll back.

    The rollout engine (sitegate.updates.rollout) calls, per device and in this
    order: ``stage`` -> ``activate`` -> ``health_check`` -> ``commit``, and
    ``rollback`` when a step after staging failed. ``artifact`` is a
    ``sitegate.updates.UpdateArtifact`` (signed envelope + payload). Raise
    ``sitegate.updates.UpdateRefused`` (a check failed: signature, expired,
    hardware, counter, ...), ``DeviceUnreachable`` (no answer) or
    ``UpdateFailed``; the engine counts them as refused / timed_out / failed.
    Every method must be safe to call again after a gateway restart.
    """

    async def stage(self, device: str, artifact: Any) -> str | None:
        """Verify the artifact for this device and write it to the inactive bank.

        Resumable: a second call after an interruption continues where the
        device's bank stopped. Return "installed" if the device already runs
        and committed it, "trial" if it already runs it uncommitted, else None.
        """

    async def activate(self, device: str) -> None:
        """Switch the device to the staged bank (one try; the device reverts by itself if it cannot boot it)."""

    async def health_check(self, device: str, deadline: float) -> bool:
        """True if the device runs the new bank and is healthy; answer by `deadline` (time.time seconds)."""

    async def commit(self, device: str) -> None:
        """Make the new bank permanent."""

    async def rollback(self, device: str) -> None:
        """Go back to the previous bank (and drop anything staged)."""

    # Optional, used when present:
    #   def inventory(self) -> dict[str, dict]   devices this handler reaches, each with at least
    #       "hardware_id" (rollouts target every fitting device when no list is given)
    #   async def report(self, device) -> dict   what the device says it runs
    #   def twin_id(self, device) -> str | None   the site device whose twin shows it (default <entry id>.<device>)


@attrs.frozen(slots=True)
class CliCommand:
    """A verb an integration adds to the command line: ``sitegate <domain> <name> ...``."""

    name: str
    help: str
    configure: Callable[[Any], None]    # adds arguments to an argparse.ArgumentParser
    run: Callable[[Any], int]           # runs with the parsed arguments; returns the exit status
