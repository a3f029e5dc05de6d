"""docs/operations.md and the Grafana dashboard name only metrics the code exports, and the code exports none undocumented."""

import json
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SOURCES = list((REPO / "core" / "sitegate" / "observability").glob("*.py"))


def exported() -> set[str]:
    names = set()
    for f in SOURCES:
        names |= set(re.findall(r'Metric\(\s*"([a-z_]+)"', f.read_text()))
    return names


def documented() -> set[str]:
    text = (REPO / "docs" / "operations.md").read_text()
    rows = [l for l in text.splitlines() if l.startswith("| `")]
    names = set()
    for row in rows:
        first = row.split("|")[1]
        names |= set(re.findall(r"`([a-z_]+)`", first))
    return names


def test_every_exported_metric_is_documented_and_every_documented_one_exists():
    exp, doc = exported(), documented() - {"metrics", "healthz", "readyz"}
    assert exp - doc == set(), f"exported but not in docs/operations.md: {sorted(exp - doc)}"
    metric_like = {d for d in doc if "_" in d or d in {"devices"}}
    assert metric_like - exp == set(), f"documented but not exported: {sorted(metric_like - exp)}"


def test_grafana_dashboard_uses_only_exported_metrics():
    dash = json.loads((REPO / "examples" / "grafana" / "sitegate.json").read_text())
    used = set()
    for panel in dash["panels"]:
        for target in panel["targets"]:
            used |= {m[len("sitegate_"):] for m in re.findall(r"sitegate_[a-z_]+", target["expr"])}
    counters = {n for n in exported() if n.endswith("_total")}
    assert used - exported() == set(), sorted(used - exported())
    assert counters & used, "the dashboard should chart some counters"
