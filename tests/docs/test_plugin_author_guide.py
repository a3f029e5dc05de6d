"""The plugin author guide's minimal integration runs exactly as written.

Titled code blocks (```python title=hello/__init__.py) are written to a
folder; the guide's own test is run with pytest, and `sitegate check` /
`sitegate run` are run as the guide says.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
GUIDE = REPO / "docs" / "plugin-authors.md"
BLOCK = re.compile(r"^```(\w+) title=(\S+)\n(.*?)^```", re.S | re.M)
SITEGATE = [sys.executable, "-m", "sitegate.cli"]


def titled_blocks(doc: Path) -> dict[str, str]:
    return {title: body for _, title, body in BLOCK.findall(doc.read_text())}


@pytest.fixture
def guide_folder(tmp_path):
    for title, body in titled_blocks(GUIDE).items():
        dest = tmp_path / title
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(body)
    return tmp_path


def test_guide_has_the_minimal_integration():
    assert {"hello/manifest.json", "hello/__init__.py", "site.yaml", "test_hello.py"} <= set(titled_blocks(GUIDE))


def test_guide_check_command_passes(guide_folder):
    out = subprocess.run(SITEGATE + ["check", "site.yaml", "--dev-plugins", "."], cwd=guide_folder,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "UNSIGNED" in out.stderr   # the loud dev-plugins warning


def test_guide_own_test_passes(guide_folder):
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_hello.py"],
                         cwd=guide_folder, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 passed" in out.stdout


def test_guide_run_command_produces_readings_and_stops_on_sigterm(guide_folder):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(SITEGATE + ["run", "site.yaml", "--dev-plugins", ".", "--log-level", "DEBUG"],
                            cwd=guide_folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "hall: setup_in_progress -> loaded" in line:
                break
        assert any("-> loaded" in l for l in lines), "".join(lines)
    finally:
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, "".join(lines) + rest
