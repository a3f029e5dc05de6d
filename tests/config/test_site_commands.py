"""`sitegate check` on a good site, `sitegate config` masking, and where plugins come from."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sitegate.cli import main
from sitegate.cli.common import plugin_source_from_args
from sitegate.config import load_site
from sitegate.config.masking import MASK
from sitegate.errors import SitegateError

GOOD = """
    site: plant-a/line-3
    entries:
      - id: press
        domain: sensor
        version: 1             # written for version 1: `addr` is migrated to `host`
        config: {port: 502, addr: press.local}
      - id: uplink
        domain: uplink
        config: {host: broker.example, password: !secret uplink_password}
    routes:
      - from: [press/*]
        through: [{scale: {factor: 0.1}}]
        to: [uplink]
    """


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "sitegate.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=60)


def _main(capsys, *args):
    """The CLI in this process (faster than a subprocess): (exit status, stdout, stderr)."""
    status = main([str(a) for a in args])
    out = capsys.readouterr()
    return status, out.out, out.err


def test_good_site_passes_check_with_migration_and_processor_steps(write, check):
    write("secrets.yaml", "uplink_password: s3cret-pass\n")
    site = write("site.yaml", GOOD)
    assert check(site) == []


def test_sitegate_check_prints_a_short_summary_for_a_good_site(write, plugins_dir):
    write("secrets.yaml", "uplink_password: s3cret-pass\n")
    site = write("site.yaml", GOOD)
    result = _cli("check", site, "--dev-plugins", plugins_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith(f"OK {site}: site 'plant-a/line-3', 2 entries, 1 route")
    assert "sensor 1.0.0" in result.stdout and "uplink 1.0.0" in result.stdout


def test_sitegate_config_prints_the_composed_site_with_secrets_masked(write, capsys):
    write("secrets.yaml", "uplink_password: s3cret-pass\n")
    write("base.yaml", "site: base\napi: {port: 9000}\n")
    site = write("site.yaml", "extends: [base.yaml]\n" + GOOD.replace("\n    ", "\n"))
    status, out, err = _main(capsys, "config", site)
    assert status == 0, err
    assert "s3cret-pass" not in out
    shown = yaml.safe_load(out)
    assert shown["entries"][1]["config"]["password"] == MASK
    assert shown["api"] == {"port": 9000} and "extends" not in shown
    with_defaults = yaml.safe_load(_main(capsys, "config", site, "--with-defaults")[1])
    assert with_defaults["runtime"]["shutdown_timeout"] == 10.0
    assert with_defaults["routes"][0]["from"] == ["press/*"]


def test_sitegate_config_refuses_a_bad_site_with_the_places(write, capsys):
    site = write("site.yaml", "site: x\napi: {port: high}\n")
    status, out, _ = _main(capsys, "config", site)
    assert status == 1
    assert f"{site}:2: api.port: expected int" in out


def _args(*argv: str) -> argparse.Namespace:
    from sitegate.cli.common import add_plugin_source_args
    parser = argparse.ArgumentParser()
    parser.add_argument("site")
    add_plugin_source_args(parser)
    return parser.parse_args(list(argv))


def test_dev_plugins_gives_an_unsigned_folder_source_and_warns(write, plugins_dir, capsys):
    site = write("site.yaml", "site: x\n")
    source = plugin_source_from_args(_args(str(site), "--dev-plugins", str(plugins_dir)))
    assert source.verified is False and "sensor" in source.available()
    assert "UNSIGNED" in capsys.readouterr().err


def test_without_dev_plugins_or_a_registry_there_is_no_plugin_source(write, tmp_path):
    site = write("site.yaml", "site: x\n")
    with pytest.raises(SitegateError, match=r"^no plugin source: no signed registry at .*--dev-plugins DIR"):
        plugin_source_from_args(_args(str(site), "--registry", str(tmp_path / "nowhere")))


def test_check_without_a_plugin_source_exits_with_a_clear_message(write, tmp_path, capsys):
    site = write("site.yaml", "site: x\n")
    status, _, err = _main(capsys, "check", site, "--registry", tmp_path / "nowhere")
    assert status == 2
    assert "no plugin source" in err


def test_check_without_dev_plugins_uses_the_signed_registry(tmp_path):
    repo = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-m", "sitegate.cli", "check", "examples/demo/site.yaml",
                             "--registry", "registry", "--state", str(tmp_path / "state")],
                            cwd=repo, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("OK examples/demo/site.yaml")
    assert "UNSIGNED" not in result.stderr


def test_check_json_lists_the_issues_for_tools(write, plugins_dir, capsys):
    site = write("site.yaml", "site: x\napi: {port: high}\nentries: [{id: a, domain: nope}]\n")
    status, out, _ = _main(capsys, "check", site, "--json", "--dev-plugins", plugins_dir)
    report = json.loads(out)
    assert status == 1 and report["ok"] is False
    assert [(i["line"], i["path"]) for i in report["issues"]] == [(2, "api.port"), (3, "entries[0].domain")]
