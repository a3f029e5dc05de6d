"""The demo site starts with `make run` (here with a copy of its site file on free ports) and reads data."""

from __future__ import annotations

import shutil

import pytest

from sitegate.testing import write_site

from example_runs import REPO, Child


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_run_starts_the_demo_site(tmp_path):
    site = write_site(tmp_path, (REPO / "examples" / "demo" / "site.yaml").read_text(), fast=False)
    child = Child(["make", "--no-print-directory", "run", f"SITE={site}"])
    try:
        child.wait_line("running with", timeout=300)
        child.wait_line("press: setup_in_progress -> loaded", timeout=30)
        # The heartbeat line counts readings; the first comes ten seconds in.
        line = child.wait_line("readings in the last", timeout=30)
        assert " 0 readings in the last" not in line, line
    finally:
        child.stop()
    assert "shutting down" in child.output and "Traceback" not in child.output, child.output[-5000:]
