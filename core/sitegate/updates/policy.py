"""Rollout policy: waves, canary, soak, timeouts, concurrency and abort criteria.

Fields map one to one to AWS IoT Jobs (jobExecutionsRolloutConfig, timeoutConfig,
abortConfig) and Greengrass deployments (their IoT job configuration);
docs/updates.md has the table. `plan_waves` is the pure part: which device goes
in which wave.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any, Iterable

import attrs

FAILURE_TYPES = ("failed", "refused", "timed_out")   # AWS: FAILED, REJECTED, TIMED_OUT (ALL = all three)


def _pct(value: float) -> float:
    return float(value)


@attrs.frozen(slots=True)
class AbortCriteria:
    """Abort when at least `threshold_pct` % of the executed devices failed this way (AWS abortConfig.criteriaList)."""

    failure_types: tuple[str, ...] = FAILURE_TYPES   # failureType
    threshold_pct: float = 10.0                        # thresholdPercentage
    min_executed: int = 1                              # minNumberOfExecutedThings

    def __attrs_post_init__(self):
        bad = [t for t in self.failure_types if t not in FAILURE_TYPES]
        if bad or not self.failure_types:
            raise ValueError(f"abort.failure_types: expected some of {', '.join(FAILURE_TYPES)}, got {bad or '[]'}")
        if not 0 < self.threshold_pct <= 100:
            raise ValueError(f"abort.threshold_pct: expected 0 < pct <= 100, got {self.threshold_pct}")
        if self.min_executed < 1:
            raise ValueError(f"abort.min_executed: expected at least 1, got {self.min_executed}")

    def tripped(self, executed: int, failures: dict[str, int]) -> str | None:
        """Why the rollout must stop, or None."""
        if executed < self.min_executed:
            return None
        count = sum(failures.get(t, 0) for t in self.failure_types)
        if count and count * 100.0 / executed >= self.threshold_pct:
            return (f"{count} of {executed} executed devices {'/'.join(self.failure_types)} "
                    f"({count * 100.0 / executed:.0f}% >= {self.threshold_pct:g}%)")
        return None


@attrs.frozen(slots=True)
class RolloutPolicy:
    waves: tuple[float, ...] = (1.0, 10.0, 50.0, 100.0)   # cumulative % of targets after each wave
    canary_per_hardware: int = 1      # the first wave holds at least this many devices of every hardware id
    soak: float = 300.0               # seconds to wait after a wave before the next one starts
    device_timeout: float = 600.0     # seconds for one device from stage to commit (AWS inProgressTimeout)
    health_window: float = 30.0       # seconds the device has to report healthy after activation
    max_concurrent: int = 50          # devices updating at once (AWS maximumPerMinute's role, as a bound)
    abort: tuple[AbortCriteria, ...] = (AbortCriteria(),)

    def __attrs_post_init__(self):
        waves = list(self.waves)
        if not waves or waves[-1] != 100 or any(not 0 < w <= 100 for w in waves) or waves != sorted(set(waves)):
            raise ValueError(f"waves: expected increasing percentages ending at 100, got {waves}")
        for name in ("soak", "device_timeout", "health_window"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: expected a duration >= 0 s, got {getattr(self, name)}")
        if self.max_concurrent < 1:
            raise ValueError(f"max_concurrent: expected at least 1, got {self.max_concurrent}")
        if self.canary_per_hardware < 0:
            raise ValueError(f"canary_per_hardware: expected >= 0, got {self.canary_per_hardware}")

    def to_dict(self) -> dict[str, Any]:
        return {"waves": list(self.waves), "canary_per_hardware": self.canary_per_hardware, "soak": self.soak,
                "device_timeout": self.device_timeout, "health_window": self.health_window,
                "max_concurrent": self.max_concurrent,
                "abort": [{"failure_types": list(a.failure_types), "threshold_pct": a.threshold_pct,
                           "min_executed": a.min_executed} for a in self.abort]}

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "policy") -> RolloutPolicy:
        known = set(attrs.fields_dict(cls))
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")
        kw = dict(data)
        if "waves" in kw:
            kw["waves"] = tuple(float(w) for w in kw["waves"])
        if "abort" in kw:
            kw["abort"] = tuple(AbortCriteria(tuple(a.get("failure_types", FAILURE_TYPES)),
                                              float(a.get("threshold_pct", 10.0)), int(a.get("min_executed", 1)))
                                for a in kw["abort"])
        try:
            return cls(**kw)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}: {exc}") from None


def _spread(rollout_id: str, device: str) -> bytes:
    # A stable pseudo-random order: the same rollout always picks the same canaries, across restarts.
    return hashlib.sha256(f"{rollout_id}/{device}".encode()).digest()


def plan_waves(rollout_id: str, devices: Iterable[tuple[str, str]], policy: RolloutPolicy) -> list[tuple[str, str, int]]:
    """(device, hardware id, wave) for every target; wave 0 is the canary and covers every hardware id."""
    targets = sorted(set(devices), key=lambda d: _spread(rollout_id, d[0]))
    if not targets:
        return []
    canary: list[tuple[str, str]] = []
    per_hw: dict[str, int] = {}
    for device, hw in targets:
        if per_hw.get(hw, 0) < policy.canary_per_hardware:
            per_hw[hw] = per_hw.get(hw, 0) + 1
            canary.append((device, hw))
    chosen = set(canary)
    ordered = canary + [t for t in targets if t not in chosen]
    n = len(ordered)
    bounds = []
    for i, pct in enumerate(policy.waves):
        size = math.ceil(pct * n / 100)
        if i == 0:
            size = max(size, len(canary))
        bounds.append(min(n, max(size, bounds[-1] if bounds else 0)))
    bounds[-1] = n
    out, wave = [], 0
    for position, (device, hw) in enumerate(ordered):
        while position >= bounds[wave]:
            wave += 1
        out.append((device, hw, wave))
    return out
