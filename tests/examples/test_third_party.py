"""examples/third_party: one command tests, builds, signs (publisher `acme`), publishes and runs a site."""

from __future__ import annotations

import sys

from sitegate.testing import write_site

from example_runs import REPO, Child, history_rows

EXAMPLE = REPO / "examples" / "third_party"


def test_third_party_plugin_runs_in_a_site_from_the_registry(tmp_path):
    # The example's own site file, with free ports and its state in tmp_path.
    site = write_site(tmp_path, (EXAMPLE / "site.yaml").read_text())
    child = Child([sys.executable, str(EXAMPLE / "run.py"), "--work", str(tmp_path / "work"), "--site", str(site)])
    try:
        child.wait_line("published as plugins/acme/acme_fahrenheit-1.0.0.zip by acme")
        child.wait_line("installed acme_fahrenheit 1.0.0 (publisher acme)")
        child.wait_line("hist: setup_in_progress -> loaded")
        # 18..24 degC in, so only converted values (64.4..75.2 degF) may reach the history.
        rows = child.wait_until(lambda: len(history_rows(tmp_path / ".sitegate")) >= 10 and history_rows(
            tmp_path / ".sitegate"), 60, "10 readings in the history")
    finally:
        status = child.stop()
    assert all(64 <= value <= 76 for _, point, value in rows if point == "temperature"), rows
    assert status == 0, child.output
    assert "UNSIGNED" not in child.output        # nothing came from a dev folder
