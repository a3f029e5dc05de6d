"""The example modules through the ABI: a moving average and a threshold keep per-point state across batches."""

from __future__ import annotations

import math

import pytest

from sitegate.model import Batch, Severity


def moving_average(values, window):
    """The reference: the same running sum (subtract the oldest once the window is full) as the module."""
    out, ring, total = [], [], 0.0
    for v in values:
        if len(ring) == window:
            total -= ring.pop(0)
        ring.append(v)
        total += v
        out.append(total / len(ring))
    return out


def test_moving_average_matches_the_reference_per_point_across_batches(dev):
    step = dev("moving_average.wat", config={"window": 4})
    a = [float(i * i % 17) for i in range(30)]
    b = [100.0 - i for i in range(30)]
    got = {"a": [], "b": []}
    for start in range(0, 30, 7):        # batches of uneven size, points interleaved
        rows = [(p, v) for i in range(start, min(start + 7, 30)) for p, v in (("a", a[i]), ("b", b[i]))]
        out = step.process(Batch("dev1", [p for p, _ in rows], [v for _, v in rows],
                                 [float(i) for i in range(len(rows))]))
        for p, v in zip(out.points, out.values):
            got[p].append(v)
    assert got["a"] == moving_average(a, 4)
    assert got["b"] == moving_average(b, 4)


def test_same_point_name_on_two_devices_keeps_separate_state(dev):
    step = dev("moving_average.wat", config={"window": 2})
    step.process(Batch("d1", ["t"], [10.0], [1.0]))
    step.process(Batch("d2", ["t"], [100.0], [1.0]))
    assert step.process(Batch("d1", ["t"], [20.0], [2.0])).values == [15.0]
    assert step.process(Batch("d2", ["t"], [200.0], [2.0])).values == [150.0]


def test_time_quality_and_source_pass_through(dev):
    step = dev("moving_average.wat")
    batch = Batch("d", ["x", "y"], [1.0, 2.0], [5.5, 6.5], [0, 0x81], "plc")
    out = step.process(batch)
    assert (out.timestamps, out.quality, out.source, out.device) == ([5.5, 6.5], [0, 0x81], "plc", "d")


def test_bad_readings_pass_unaveraged_and_leave_the_average_alone(dev):
    step = dev("moving_average.wat", config={"window": 3})
    out = step.process(Batch("d", ["x"] * 4, [1.0, 99.0, 3.0, 5.0], [1.0, 2.0, 3.0, 4.0], [0, 0x82, 0, 0]))
    assert out.values == [1.0, 99.0, 2.0, 3.0] and out.quality == [0, 0x82, 0, 0]


def test_non_numbers_reach_the_module_as_nan(dev):
    out = dev("moving_average.wat", config={"window": 1}).process(Batch("d", ["x", "y"], ["abc", None], [1.0, 1.0]))
    assert all(math.isnan(v) for v in out.values)


def test_threshold_raises_alerts_on_crossing_with_hysteresis_across_batches(dev, ctx):
    step = dev("threshold.wat", ctx, config={"above": 50, "hysteresis": 5})
    first = Batch("d", ["temp", "temp"], [40.0, 51.0], [1.0, 2.0])
    assert step.process(first).values == [40.0, 51.0]
    step.process(Batch("d", ["temp"], [47.0], [3.0]))          # inside the hysteresis band: no event
    step.process(Batch("d", ["temp"], [44.0], [4.0]))          # back to normal
    step.process(Batch("d", ["temp"], [44.0], [5.0]))
    alerts = ctx.kinds("alert")
    assert [(e.point, e.severity, e.data["code"], e.data["value"], e.data["reading_ts"]) for e in alerts] == [
        ("temp", Severity.WARNING, 1, 51.0, 2.0), ("temp", Severity.INFO, 0, 44.0, 4.0)]
    assert alerts[0].source == "r1" and alerts[0].device == "d"


def test_threshold_output_is_the_input(dev):
    batch = Batch("d", ["a", "b"], [1.5, 99.0], [1.0, 2.0])
    out = dev("threshold.wat").process(batch)
    assert list(out.rows()) == list(batch.rows())


def test_unknown_config_key_is_refused_naming_what_the_module_declares(dev):
    with pytest.raises(ValueError, match=r"config: .*moving_average.wat has no setting 'windw' \(it declares: window\)"):
        dev("moving_average.wat", config={"windw": 3})


def test_config_of_the_wrong_type_is_refused(dev):
    with pytest.raises(ValueError, match=r"config\.window: expected an integer .* got 2\.5"):
        dev("moving_average.wat", config={"window": 2.5})


def test_init_refusing_the_config_stops_the_step(dev):
    with pytest.raises(ValueError, match=r"init refused the config \{'window': 0\} \(code 1\)"):
        dev("moving_average.wat", config={"window": 0})


def test_module_without_the_abi_exports_is_refused(tmp_path, dev):
    path = tmp_path / "empty.wat"
    path.write_text("(module (memory (export \"memory\") 1))")
    with pytest.raises(ValueError, match="does not export alloc, process"):
        dev(str(path))


def test_export_with_the_wrong_signature_is_refused(tmp_path, dev):
    path = tmp_path / "wrong.wat"
    path.write_text('(module (memory (export "memory") 1) (func (export "alloc") (param i32) (result i32) i32.const 8)'
                    ' (func (export "process") (param i32) (result i32) i32.const 0))')
    with pytest.raises(ValueError, match=r"export 'process' must be a function \(i32, i32\) -> i32"):
        dev(str(path))


def test_points_beyond_max_points_are_dropped_counted_and_said_once(dev, ctx):
    step = dev("moving_average.wat", ctx, max_points=2, config={"window": 1})
    out = step.process(Batch("d", ["a", "b", "c"], [1.0, 2.0, 3.0], [1.0, 1.0, 1.0]))
    assert out.points == ["a", "b"] and out.values == [1.0, 2.0]
    step.process(Batch("d2", ["a"], [4.0], [1.0]))
    assert step.stats()["unmapped"] == 2
    (warning,) = ctx.kinds("wasm.points_exceeded")
    assert warning.data["max_points"] == 2
