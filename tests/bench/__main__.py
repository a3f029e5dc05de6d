"""Runs the benchmark modules (tests/bench/bench_*.py) and prints one BENCH line per figure.

Each module runs in its own process, so one benchmark's memory or threads
never colour another's figures. A module exposes ``run() -> list[dict]``
with name, value, unit, baseline, ratio, target, passed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent


def _fmt(x) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.4g}" if abs(x) < 1e6 else f"{x:.0f}"
    return str(x)


def line(fig: dict) -> str:
    target = str(fig.get("target", "-")).replace(" ", "")
    verdict = "PASS" if fig.get("passed") else "FAIL"
    return (f"BENCH {fig['name']} value={_fmt(fig.get('value'))} unit={fig.get('unit', '-')} "
            f"baseline={_fmt(fig.get('baseline'))} ratio={_fmt(fig.get('ratio'))} target={target} {verdict}")


def _modules(only: str | None) -> list[str]:
    mods = sorted(p.stem for p in HERE.glob("bench_*.py"))
    if only:
        mods = [m for m in mods if f'"{only}"' in (HERE / f"{m}.py").read_text() or m == f"bench_{only}"]
    return mods


def run_one(module: str) -> None:
    import importlib
    mod = importlib.import_module(f"tests.bench.{module}")
    for fig in mod.run():
        print("@@FIG " + json.dumps(fig, default=float), flush=True)


def main(argv: list[str]) -> int:
    if argv and argv[0] == "--one":
        run_one(argv[1])
        return 0
    only = argv[0] if argv else None
    mods = _modules(only)
    if not mods:
        print(f"no benchmark named {only!r}; figures are defined in tests/bench/bench_*.py", file=sys.stderr)
        return 2
    failed_to_run = 0
    for module in mods:
        t0 = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "tests.bench", "--one", module],
                              capture_output=True, text=True)
        figs = [json.loads(l[6:]) for l in proc.stdout.splitlines() if l.startswith("@@FIG ")]
        for fig in figs:
            if only and fig["name"] != only and module != f"bench_{only}":
                continue
            print(line(fig), flush=True)
        if proc.returncode != 0:
            failed_to_run += 1
            tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
            print(f"# {module} failed (exit {proc.returncode}) after {time.monotonic() - t0:.1f} s:\n{tail}",
                  file=sys.stderr, flush=True)
    return 1 if failed_to_run else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
