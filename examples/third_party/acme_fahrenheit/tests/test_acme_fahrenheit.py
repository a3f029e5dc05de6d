"""ACME's fahrenheit processor against hand-computed conversions."""

from pathlib import Path

from sitegate.testing import ProcessorDriver

PLUGIN = Path(__file__).resolve().parents[1]


def test_converts_the_named_points_only():
    step = ProcessorDriver(PLUGIN, "fahrenheit", {"points": ["t"]})
    rows = step.feed("m", {"t": 100, "h": 40, "state": "ok"}, ts=1.0)
    assert [(p, v) for p, v, _, _ in rows] == [("t", 212.0), ("h", 40), ("state", "ok")]


def test_empty_points_converts_every_number():
    step = ProcessorDriver(PLUGIN, "fahrenheit")
    assert step.feed_series("m", "x", [(0, -40), (1, 0)]) == [(0, -40.0), (1, 32.0)]
