"""`sitegate run --log-json`: one JSON object per line; entry lines carry entry id and domain; no secrets."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "core" / "fixture_plugins"


def test_json_log_lines_carry_entry_and_domain_and_never_a_secret(tmp_path):
    (tmp_path / "secrets.yaml").write_text("pw: s3cr3t-Pa55word\n")
    site = tmp_path / "site.yaml"
    site.write_text(f"""
site: logs
runtime: {{state_dir: {tmp_path / 'state'}, retry_backoff: [0.1], retry_jitter: 0}}
api: {{port: 0}}
observability: {{port: 0}}
entries:
  - {{id: db, domain: vault, config: {{url: "x://u:s3cr3t-Pa55word@h/", password: !secret pw}}}}
  - {{id: flaky, domain: flaky, config: {{fail_times: 2}}}}
""")
    proc = subprocess.Popen([sys.executable, "-m", "sitegate.cli", "run", str(site), "--log-json",
                             "--dev-plugins", str(REPO / "plugins"), "--dev-plugins", str(FIXTURES)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    lines = []
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if '"entry flaky: setup_in_progress -> loaded"' in line or "flaky: setup_in_progress -> loaded" in line:
                break
    finally:
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=30)
    lines += rest.splitlines(keepends=True)
    records = [json.loads(l) for l in lines if l.startswith("{")]
    assert records, "".join(lines)
    retry = [r for r in records if "flaky: setup_in_progress -> setup_retry" in r["msg"]]
    assert retry and retry[0]["entry_id"] == "flaky" and retry[0]["domain"] == "flaky"
    assert retry[0]["level"] == "warning" and isinstance(retry[0]["ts"], float)
    entry_lines = [r for r in records if r["logger"].startswith("sitegate.entry.")]
    assert entry_lines and all("entry_id" in r and "domain" in r for r in entry_lines)
    assert "s3cr3t-Pa55word" not in "".join(lines)
