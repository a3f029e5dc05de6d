"""Shadow mode: a candidate runs on the same batches, differences are reported, only the active output counts."""

from __future__ import annotations

import pytest

from sitegate.model import Batch, Severity
from sitegate.structure import structure

from plugins.wasm.processor import WasmParams, WasmProcessor
from plugins.wasm.shadow import compare_batches, promote_step
from wasm_helpers import Ctx, wasm_bytes, wat


def batches(k=5):
    for i in range(k):
        yield Batch("d", ["a", "b"], [float(i * 3), float(10 - i)], [float(i), float(i)])


def test_shadow_with_a_deliberate_difference_is_reported(dev, ctx):
    # Same module, window 3 against the active window 2: from the third sample on, averages differ.
    step = dev("moving_average.wat", ctx, config={"window": 2},
               shadow={"module_path": str(wat("moving_average.wat")), "config": {"window": 3}})
    reference = dev("moving_average.wat", config={"window": 2})
    for b in batches():
        assert step.process(b).values == reference.process(b).values      # the active output is what goes on
    diffs = ctx.kinds("processor.shadow_diff")
    assert len(diffs) == 1                      # at once on the first difference, then at most every 10 s
    first = diffs[0]
    assert first.severity == Severity.WARNING and first.source == "r1"
    assert first.data["differing"] == 2 and first.data["readings"] == 6     # found on the third batch
    ctx.now += 10
    step.flush(ctx.now)
    summary = ctx.kinds("processor.shadow_diff")[-1].data
    # window 2 vs 3 differ at every reading from the third sample on (the first two agree)
    assert summary["batches"] == 5 and summary["readings"] == 10 and summary["differing"] == 6
    assert summary["max_abs_diff"] == pytest.approx(1.5)
    assert summary["active"].startswith("UNSIGNED") and summary["shadow_failures"] == 0


def test_first_difference_is_reported_at_once_after_a_quiet_summary(dev, ctx):
    # In a site the data plane flushes every second from the start, so a summary with no
    # difference comes before the first difference; that one must still be reported at once.
    step = dev("moving_average.wat", ctx, config={"window": 2},
               shadow={"module_path": str(wat("moving_average.wat")), "config": {"window": 3}})
    stream = batches()
    step.process(next(stream))
    ctx.now += 1
    step.flush(ctx.now)
    assert [e.severity for e in ctx.kinds("processor.shadow_diff")] == [Severity.INFO]
    for b in stream:
        ctx.now += 1
        step.process(b)
    diffs = ctx.kinds("processor.shadow_diff")
    assert [e.severity for e in diffs] == [Severity.INFO, Severity.WARNING]   # the third batch, not 10 s later
    assert diffs[1].data["differing"] == 2 and diffs[1].data["readings"] == 6


def test_identical_shadow_reports_no_difference(dev, ctx):
    step = dev("moving_average.wat", ctx, shadow={"module_path": str(wat("moving_average.wat"))})
    for b in batches():
        step.process(b)
    assert ctx.kinds("processor.shadow_diff") == []
    ctx.now += 60
    step.flush(ctx.now)
    (report,) = ctx.kinds("processor.shadow_diff")
    assert report.severity == Severity.INFO
    assert (report.data["readings"], report.data["differing"], report.data["max_abs_diff"]) == (10, 0, 0.0)


def test_failing_shadow_never_touches_the_active_output(dev, ctx):
    step = dev("moving_average.wat", ctx, config={"window": 1},
               shadow={"module_path": str(wat("trap_negative.wat")), "config": {}})
    out = step.process(Batch("d", ["x"], [-5.0], [1.0]))
    assert out.values == [-5.0] and step.state == "running" and step.failures == 0
    (report,) = ctx.kinds("processor.shadow_diff")
    assert report.data["shadow_failures"] == 1 and "unreachable" in report.data["last_shadow_failure"]


def test_shadow_events_are_compared_not_emitted(dev, ctx):
    step = dev("threshold.wat", ctx, config={"above": 5},
               shadow={"module_path": str(wat("threshold.wat")), "config": {"above": 50}})
    step.process(Batch("d", ["x"], [10.0], [1.0]))
    assert len(ctx.kinds("alert")) == 1         # the active module's alert only
    (report,) = ctx.kinds("processor.shadow_diff")
    assert report.data["differing_events"] == 1 and report.data["differing"] == 0


def test_signed_shadow_version(lab):
    lab.publish("moving_average", "1.1.0", wasm_bytes("moving_average.wat"))
    ctx = Ctx(modules=lab.store())
    p = structure({"module": "acme/moving_average", "version": "1.0.0", "config": {"window": 2},
                   "shadow": {"module": "acme/moving_average", "version": "1.1.0", "config": {"window": 4}}},
                  WasmParams)
    step = WasmProcessor(p, ctx)
    for b in batches():
        step.process(b)
    (report,) = ctx.kinds("processor.shadow_diff")
    assert report.data["shadow"] == "acme/moving_average 1.1.0" and report.data["active"] == "acme/moving_average 1.0.0"


def test_compare_matches_readings_by_point_and_time():
    a = Batch("d", ["x", "y"], [1.0, 2.0], [1.0, 1.0])
    c = Batch("d", ["y", "x", "z"], [2.5, 1.0, 9.0], [1.0, 1.0, 1.0])
    assert compare_batches(a, c, 0.0) == (3, 2, 0.5)        # y differs by 0.5, z only in the candidate
    assert compare_batches(a, c, 0.5) == (3, 1, 0.5)
    assert compare_batches(a, None, 0.0) == (2, 2, 0.0)


def test_promote_makes_the_shadow_active():
    step = {"module": "acme/moving_average", "version": "1.0.0", "config": {"window": 5}, "fuel": 1000,
            "shadow": {"module": "acme/moving_average", "version": "1.1.0"}}
    assert promote_step(step) == {"module": "acme/moving_average", "version": "1.1.0", "config": {"window": 5},
                                  "fuel": 1000}
    with pytest.raises(ValueError, match="no `shadow:` to promote"):
        promote_step({"module": "acme/m", "version": "1"})
