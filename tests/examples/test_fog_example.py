"""examples/fog/run.py: two edge sites and a fog site, one command, from the signed registry."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.mosquitto


def test_fog_example_runs_in_one_command_and_the_cloud_gets_both_edges():
    from sitegate.testing.mosquitto import find_mosquitto
    if find_mosquitto() is None:
        pytest.skip("Mosquitto is not installed (Debian: apt-get install mosquitto)")
    out = subprocess.run([sys.executable, str(REPO / "examples" / "fog" / "run.py"), "--seconds", "12"],
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    summary = [l for l in out.stdout.splitlines() if l.startswith("SUMMARY")][0]
    assert "plant-a/edge-a" in summary and "plant-a/edge-b" in summary and summary.endswith("OK")
