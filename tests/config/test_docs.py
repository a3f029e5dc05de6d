"""The integrator guide's site-file examples pass `sitegate check` as written; the key reference is current."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path


from sitegate.config import load_site
from sitegate.config.reference import render
from sitegate.config.validate import check_site
from sitegate.loader import DevFolderSource, Loader

REPO = Path(__file__).resolve().parents[2]
GUIDE = REPO / "docs" / "integrators.md"
BLOCK = re.compile(r"^```(\w+) title=(\S+)\n(.*?)^```", re.S | re.M)


def _write_guide_files(folder: Path) -> None:
    for _, title, body in BLOCK.findall(GUIDE.read_text(encoding="utf-8")):
        dest = folder / title
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(body, encoding="utf-8")


def test_site_reference_is_generated_from_the_schema_and_up_to_date():
    committed = (REPO / "docs" / "site-reference.md").read_text(encoding="utf-8")
    assert committed == render(), "run: python -m sitegate.config.reference > docs/site-reference.md"


def test_site_reference_documents_every_key():
    text = render()
    for row in re.findall(r"^\| `([^`]+)` \| [^|]+ \| [^|]+ \| (.*) \|$", text, re.M):
        key, meaning = row
        assert meaning.strip(), f"key {key!r} has no doc in its field metadata"


def test_guide_start_here_site_checks_clean_with_the_repository_plugins(tmp_path):
    _write_guide_files(tmp_path)
    result = subprocess.run([sys.executable, "-m", "sitegate.cli", "check", "site.yaml",
                             "--dev-plugins", str(REPO / "plugins")],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("OK site.yaml: site 'demo/line-1', 2 entries, 1 route")


def test_guide_layer_example_composes_as_the_guide_says(tmp_path):
    _write_guide_files(tmp_path)
    loaded = load_site(tmp_path / "line-3.yaml")
    site = loaded.site
    assert site.site == "plant-a/line-3"
    assert [(e.id, e.config) for e in site.entries] == [("sim", {"devices": 8, "interval": "1s"})]
    assert [(r.name, r.priority) for r in site.routes] == [("temperatures", "critical")]
    _, issues = check_site(tmp_path / "line-3.yaml", Loader(DevFolderSource(REPO / "plugins", warn=False)))
    assert issues == []
