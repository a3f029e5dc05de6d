"""What can go wrong delivering an update to one device, as the rollout engine classifies it.

Update handlers raise these; the engine maps them to failure types
(refused, timed_out, failed) that abort criteria count.
"""

from __future__ import annotations


class UpdateError(Exception):
    """Base: the update did not go through on this device."""

    failure_type = "failed"


class UpdateRefused(UpdateError):
    """An artifact failed a check; `check` names which (signature, expired, hardware, counter, ...)."""

    failure_type = "refused"

    def __init__(self, check: str, detail: str):
        super().__init__(f"{check}: {detail}")
        self.check = check
        self.detail = detail


class DeviceUnreachable(UpdateError):
    """The device did not answer within its deadline (offline, asleep, lost power)."""

    failure_type = "timed_out"


class UpdateFailed(UpdateError):
    """The device answered but the step failed (could not activate, unhealthy, ...)."""
