"""`sitegate status` and `sitegate diagnostics` against a running site; no secret ever shown."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "core" / "fixture_plugins"
CLI = [sys.executable, "-m", "sitegate.cli"]
SECRETS = {"db_password": "hunter2-very-secret", "token": "tok_5f2c9a81d0"}


def _wait_ready(site: Path, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    out = ""
    while time.monotonic() < deadline:
        p = subprocess.run(CLI + ["status", str(site)], capture_output=True, text=True, timeout=30)
        out = p.stdout + p.stderr
        if p.returncode == 0:
            return out
        time.sleep(0.2)
    raise AssertionError("site never became ready:\n" + out)


def test_status_and_redacted_diagnostics(tmp_path):
    (tmp_path / "secrets.yaml").write_text("".join(f"{k}: {v}\n" for k, v in SECRETS.items()))
    site = tmp_path / "site.yaml"
    site.write_text(f"""
site: diag
observability: {{port: 0}}
api: {{port: 0}}
runtime: {{state_dir: {tmp_path / 'state'}}}
entries:
  - id: db
    domain: vault
    config:
      url: "postgres://gw:{SECRETS['db_password']}@10.0.0.5/plant"
      password: !secret db_password
      api_token: !secret token
  - {{id: sim, domain: simulator, config: {{interval: 50ms}}}}
""")
    proc = subprocess.Popen(CLI + ["run", str(site), "--dev-plugins", str(REPO / "plugins"),
                                   "--dev-plugins", str(FIXTURES)],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        out = _wait_ready(site)
        assert "site diag: READY" in out and "db" in out and "loaded" in out
        whole = subprocess.run(CLI + ["diagnostics", str(site)], capture_output=True, text=True, timeout=30)
        one = subprocess.run(CLI + ["diagnostics", str(site), "db"], capture_output=True, text=True, timeout=30)
        dev = subprocess.run(CLI + ["diagnostics", str(site), "sim.dev0"], capture_output=True, text=True, timeout=30)
        missing = subprocess.run(CLI + ["diagnostics", str(site), "nope"], capture_output=True, text=True, timeout=30)
    finally:
        proc.send_signal(signal.SIGTERM)
        log, _ = proc.communicate(timeout=30)
    for result in (whole, one, dev):
        assert result.returncode == 0, result.stdout + result.stderr
        for secret in SECRETS.values():
            assert secret not in result.stdout
    entry = json.loads(one.stdout)["entry"]
    assert entry["entry"]["state"] == "loaded" and entry["manifest"]["domain"] == "vault"
    assert entry["config"]["password"] == "**********"
    assert entry["integration"]["config"]["api_token"] == "**********"
    assert "postgres://gw:**********@10.0.0.5/plant" == entry["config"]["url"]
    assert json.loads(dev.stdout)["device"]["info"]["id"] == "sim.dev0"
    assert missing.returncode == 1 and "no entry or device named 'nope'" in missing.stdout
    for secret in SECRETS.values():
        assert secret not in log, "a secret reached the log"
