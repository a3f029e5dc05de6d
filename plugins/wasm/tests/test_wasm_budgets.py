"""Budgets and failures: a module that runs forever, grows memory without end, traps or returns
garbage is stopped for that batch and counted; N failures in a row raise `wasm.failed`."""

from __future__ import annotations

import time

import pytest

from sitegate.model import Batch, Severity

ONE = Batch("d", ["x"], [1.0], [1.0])
NEGATIVE = Batch("d", ["x"], [-1.0], [1.0])


def test_endless_loop_is_stopped_by_fuel(dev):
    step = dev("loop_forever.wat", fuel=200_000, max_wall="10s")
    assert step.process(ONE) is None
    assert step.stats()["failures_by_reason"] == {"fuel": 1}
    assert "ran out of fuel (budget 200000 per batch)" in step.last_failure


def test_endless_loop_is_stopped_by_wall_time(dev):
    step = dev("loop_forever.wat", fuel=10**15, max_wall="20ms")
    t0 = time.monotonic()
    assert step.process(ONE) is None
    took = time.monotonic() - t0
    assert step.stats()["failures_by_reason"] == {"wall-time": 1}
    assert took < 2.0          # stopped, not finished: an endless loop has no end to wait for


def test_memory_growth_is_stopped_at_the_page_limit(dev):
    step = dev("grow_memory.wat", max_pages=8)
    assert step.process(ONE) is None
    stats = step.stats()
    assert stats["failures_by_reason"] == {"memory": 1}
    assert stats["memory_pages"] == 8
    assert "limit of 8 pages" in step.last_failure


def test_trap_stops_only_that_batch(dev):
    step = dev("trap_negative.wat")
    assert step.process(NEGATIVE) is None
    assert "unreachable" in step.last_failure
    assert step.process(ONE).values == [1.0]            # the next good batch runs
    assert step.stats()["consecutive_failures"] == 0 and step.failures == 1


def test_garbage_output_is_a_failure(dev):
    step = dev("garbage.wat")
    assert step.process(ONE) is None
    assert step.stats()["failures_by_reason"] == {"garbage": 1}
    assert "returned 6 readings for a batch of 1" in step.last_failure


def test_consecutive_failures_raise_wasm_failed_once_and_stop_the_module(dev, ctx):
    step = dev("trap_negative.wat", ctx, max_failures=3)
    step.process(NEGATIVE)
    step.process(NEGATIVE)
    step.process(ONE)                       # a success resets the count
    for _ in range(3):
        step.process(NEGATIVE)
    failed = ctx.kinds("wasm.failed")
    assert len(failed) == 1
    ev = failed[0]
    assert ev.severity == Severity.CRITICAL and ev.source == "r1"
    assert ev.data["reason"] == "trap" and ev.data["consecutive"] == 3 and ev.data["failures"] == 5
    assert "stopped after 3 failed batches in a row" in ev.message
    assert step.state == "failed"
    assert step.process(ONE) is None        # no longer runs, even on good input
    assert step.stats()["batches"] == 6 and step.skipped == 6


def test_on_failure_pass_hands_the_batch_on_unprocessed(dev):
    step = dev("trap_negative.wat", on_failure="pass", max_failures=1)
    assert step.process(NEGATIVE) is NEGATIVE
    assert step.state == "failed"
    assert step.process(ONE) is ONE


def test_wasi_imports_are_refused_unless_granted(dev):
    with pytest.raises(ValueError, match=r"imports wasi_snapshot_preview1\.clock_time_get; a sitegate module gets "
                                         r"no imports \(WASI only when the step says `wasi: true`\)"):
        dev("wasi_clock.wat")
    step = dev("wasi_clock.wat", wasi=True)
    assert step.process(ONE) is None and step.failures == 0     # ran; returned no readings


def test_budget_parameters_are_validated(dev):
    with pytest.raises(Exception, match="fuel: expected a number > 0"):
        dev("moving_average.wat", fuel=0)
    with pytest.raises(Exception, match="on_failure: expected one of drop, pass"):
        dev("moving_average.wat", on_failure="retry")


def test_fuel_per_batch_is_measured(dev):
    step = dev("moving_average.wat")
    step.process(Batch("d", ["x"] * 1000, [1.0] * 1000, [1.0] * 1000))
    assert 10_000 < step.stats()["fuel_last_batch"] < 1_000_000
