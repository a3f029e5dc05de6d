"""docs/wasm-processors.md runs as written: its complete WAT module gives the output the guide
shows, and its site file passes the site checks with the module beside it."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from sitegate.config import load_site
from sitegate.structure import structure

from plugins.wasm import cli
from plugins.wasm.processor import WasmParams

GUIDE = Path(__file__).resolve().parents[3] / "docs" / "wasm-processors.md"
BLOCK = re.compile(r"^```(\w+) title=(\S+)\n(.*?)^```", re.S | re.M)


def guide_files(folder: Path) -> dict[str, Path]:
    out = {}
    for _, title, body in BLOCK.findall(GUIDE.read_text()):
        out[title] = folder / title
        out[title].parent.mkdir(parents=True, exist_ok=True)
        out[title].write_text(body)
    return out


def test_the_guides_module_prints_what_the_guide_shows(tmp_path, capsys):
    files = guide_files(tmp_path)
    text = GUIDE.read_text()
    shown = re.search(r"sitegate wasm run .*? \S*spike_filter\.wat ([\d. ]+) --config '(.*?)'\n```\n+```text\n(.*?)```",
                      text, re.S)
    values, config, expected = shown.group(1).split(), shown.group(2), shown.group(3)
    args = argparse.Namespace(module=files["spike_filter.wat"], values=[float(v) for v in values], config=config)
    assert cli.run(args) == 0
    printed = capsys.readouterr().out.splitlines()
    expected = expected.splitlines()
    assert printed[:-1] == expected[:-1]                       # readings and events exactly
    assert printed[-1].startswith("fuel ") and printed[-1].endswith("memory 1 pages, failures 0")


def test_the_guides_site_file_is_valid(tmp_path):
    files = guide_files(tmp_path)
    loaded = load_site(files["site.yaml"])
    (step,) = loaded.site.routes[0].through
    params = structure(step["wasm"], WasmParams)
    assert params.unsigned_dev and params.config == {"max_step": 5}


async def test_the_guides_site_runs_the_module_next_to_the_site_file(tmp_path):
    from sitegate.testing import running_site, wait_for

    files = guide_files(tmp_path)
    text = files["site.yaml"].read_text().replace("interval: 200ms", "interval: 10ms")
    # The guide's site names the module by its path in the repository; here it is the guide's own text.
    assert "module_path: examples/wasm/spike_filter.wat" in text
    (tmp_path / "examples" / "wasm").mkdir(parents=True)
    files["spike_filter.wat"].rename(tmp_path / "examples" / "wasm" / "spike_filter.wat")
    async with running_site(tmp_path, text) as host:
        plane = host.services["dataplane"]
        (route,) = plane.table.routes
        (step,) = route.steps
        await wait_for(lambda: step.stats()["readings_out"] >= 5, 10, what="readings through the guide's module")
        assert step.label == "UNSIGNED spike_filter.wat" and step.failures == 0


async def test_the_example_site_runs_both_modules_and_its_shadow(tmp_path):
    from sitegate.testing import running_site, wait_for

    example = Path(__file__).resolve().parents[3] / "examples" / "wasm"
    for name in ("moving_average.wat", "threshold.wat"):
        (tmp_path / name).write_text((example / name).read_text())
    text = (example / "site.yaml").read_text().replace("interval: 500ms", "interval: 10ms")
    async with running_site(tmp_path, text) as host:
        smoothed, alerts = host.services["dataplane"].table.routes
        await wait_for(lambda: smoothed.steps[0].stats()["shadow"]["readings"] >= 10 and
                       alerts.steps[0].stats()["readings_out"] >= 10, 10, what="both routes running")
        assert smoothed.steps[0].failures == alerts.steps[0].failures == 0
