"""docs/processors.md stays true: its site example checks clean, every route step in it structures."""

import re
from pathlib import Path

import yaml

from sitegate.config import load_site
from sitegate.config.validate import validate_site
from sitegate.loader import DevFolderSource, Loader
from sitegate.structure import structure

DOC = Path("docs/processors.md")
PROCESSORS = ["deadband", "window", "threshold", "calibration", "counter", "anomaly", "zone"]


def blocks():
    return re.findall(r"```yaml[^\n]*\n(.*?)```", DOC.read_text(), re.S)


def test_the_start_here_site_checks_clean(tmp_path):
    site = next(b for b in blocks() if b.startswith("site:"))
    path = tmp_path / "site.yaml"
    path.write_text(site + f"runtime: {{state_dir: {tmp_path / 'state'}}}\n")
    loader = Loader(DevFolderSource(Path("plugins"), warn=False))
    assert validate_site(load_site(path), loader) == []


def test_every_documented_step_structures_into_its_processor_params():
    loader = Loader(DevFolderSource(Path("plugins"), warn=False))
    types = {}
    for domain in PROCESSORS:
        types.update(loader.load_one(domain).processor_types)
    seen = set()
    for block in blocks():
        doc = yaml.safe_load(block)
        if not isinstance(doc, dict) or "routes" not in doc:
            continue        # a layer of sinks, not of routes
        for i, route in enumerate(doc["routes"]):
            for j, step in enumerate(route.get("through", [])):
                (name, params), = step.items()
                structure(params, types[name].params, path=f"routes[{i}].through[{j}].{name}")
                seen.add(name)
    assert seen == set(PROCESSORS)       # every processor has at least one example
