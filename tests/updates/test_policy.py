"""Wave planning and abort criteria, without devices."""

from __future__ import annotations

import pytest

from sitegate.updates.policy import AbortCriteria, RolloutPolicy, plan_waves

FLEET = [(f"d{i:04d}", f"hw{i % 7}") for i in range(1000)]


def test_waves_default_1_10_50_100_with_a_canary_covering_every_hardware_id():
    plan = plan_waves("r1", FLEET, RolloutPolicy())
    sizes = [sum(1 for *_, w in plan if w == wave) for wave in range(4)]
    assert sizes == [10, 90, 400, 500]                     # cumulative 1%, 10%, 50%, 100%
    assert {hw for _, hw, w in plan if w == 0} == {f"hw{i}" for i in range(7)}
    assert plan == plan_waves("r1", reversed(FLEET), RolloutPolicy())   # stable: a restart plans the same
    assert plan != plan_waves("r2", FLEET, RolloutPolicy())             # another rollout, other canaries


def test_canary_grows_past_the_first_percentage_when_hardware_needs_it():
    fleet = [(f"d{i}", f"hw{i % 5}") for i in range(50)]
    plan = plan_waves("r", fleet, RolloutPolicy(canary_per_hardware=2))
    first = [d for d, _, w in plan if w == 0]
    assert len(first) == 10 and len({d for d, _, _ in plan}) == 50


def test_abort_criteria():
    c = AbortCriteria(("failed", "timed_out"), 20.0, 5)
    assert c.tripped(4, {"failed": 4}) is None                  # not enough devices executed yet
    assert c.tripped(10, {"failed": 1, "refused": 5}) is None   # refusals not counted here
    assert "2 of 10 executed devices failed/timed_out (20% >= 20%)" == c.tripped(10, {"failed": 1, "timed_out": 1})


def test_bad_policies_say_what_is_wrong():
    with pytest.raises(ValueError, match="waves: expected increasing percentages ending at 100"):
        RolloutPolicy(waves=(10.0, 50.0))
    with pytest.raises(ValueError, match="abort.failure_types: expected some of failed, refused, timed_out"):
        AbortCriteria(("exploded",))
    with pytest.raises(ValueError, match=r"policy: unknown field\(s\) soak_time"):
        RolloutPolicy.from_dict({"soak_time": 3})
