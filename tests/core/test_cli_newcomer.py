"""What a newcomer gets when a step goes wrong: a one-line error that says what and where, never a
traceback. Each test runs the real `sitegate` command, as a user types it."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SITEGATE = [sys.executable, "-m", "sitegate.cli"]


def sitegate(*argv, cwd, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run(SITEGATE + [str(a) for a in argv], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def test_run_on_a_taken_api_port_names_the_site_the_port_and_the_fix(tmp_path):
    # The quickstart's site beside a demo that still runs: both want the API port.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        (tmp_path / "site.yaml").write_text(f"""
site: clash
api: {{port: {port}}}
observability: {{port: 0}}
entries:
  - {{id: line, domain: simulator, config: {{devices: 1, interval: 1s}}}}
""")
        out = sitegate("run", "site.yaml", "--registry", REPO / "registry", cwd=tmp_path, timeout=60)
    text = out.stdout + out.stderr
    assert out.returncode == 1, text
    assert "Traceback" not in text, text
    assert (f"error: site.yaml: api: cannot serve the WebSocket API and dashboard on 127.0.0.1:{port} "
            f"(Address already in use); set api.port to a free port (0 picks one)") in out.stdout, text
