"""The registry, plugin and plugins verbs end to end, and the development publisher."""

from __future__ import annotations

import argparse
import json

import pytest

from sitegate.cli import plugin, plugins, registry
from sitegate.registry import prepare_plugins
from sitegate.registry.devpublish import main as devpublish_main


def sitegate(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="sitegate")
    sub = parser.add_subparsers()
    for module in (plugin, plugins, registry):
        module.register(sub)
    args = parser.parse_args([str(a) for a in argv])
    return args.func(args)


def write_plugin(folder, domain, version):
    src = folder / domain
    src.mkdir(parents=True, exist_ok=True)
    (src / "__init__.py").write_text(f"VERSION = {version!r}\n")
    (src / "manifest.json").write_text(json.dumps({"domain": domain, "name": domain, "version": version,
                                                   "kinds": ["sink"], "requires": ">=1.0,<2"}))
    return src


def test_owner_publisher_and_site_workflow(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    reg, state = ["--registry", "reg"], ["--registry", "reg", "--state", "st"]
    assert sitegate("registry", "init", *reg) == 0
    assert not (tmp_path / "reg" / "keys").exists(), "real keys never default to inside the registry folder"
    assert len(list((tmp_path / "reg-keys").glob("*.key"))) == 4
    assert sitegate("plugin", "keygen", "--name", "acme") == 0
    assert (tmp_path / "acme.key").stat().st_mode & 0o077 == 0, "private keys are not readable by others"
    assert sitegate("registry", "add-publisher", "acme", "acme.pub", *reg) == 0
    write_plugin(tmp_path / "src", "demo", "1.0.0")
    assert sitegate("plugin", "build", "src/demo") == 0
    first = (tmp_path / "dist" / "demo-1.0.0.zip").read_bytes()
    assert sitegate("plugin", "build", "src/demo") == 0
    assert (tmp_path / "dist" / "demo-1.0.0.zip").read_bytes() == first
    assert sitegate("plugin", "publish", "dist/demo-1.0.0.zip", "--key", "acme.key", *reg) == 0
    assert sitegate("plugins", "install", "demo==1.0.0", *state) == 0
    write_plugin(tmp_path / "src", "demo", "1.1.0")
    assert sitegate("plugin", "publish", "src/demo", "--key", "acme.key", *reg) == 0
    assert sitegate("plugins", "upgrade", "demo", *state) == 0
    assert sitegate("plugins", "rollback", "demo", *state) == 0
    capsys.readouterr()
    assert sitegate("plugins", "list", "--verify", *state) == 0
    assert "demo                 1.0.0        previous 1.1.0" in capsys.readouterr().out
    assert sitegate("registry", "verify", *reg) == 0
    capsys.readouterr()
    assert sitegate("plugins", "audit", "demo", *state) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[2] for line in lines] == ["install", "upgrade", "rollback"]
    assert "1.1.0 -> 1.0.0" in lines[-1] and lines[-1].endswith("ok")
    assert sitegate("registry", "revoke-publisher", "acme", *reg) == 0
    capsys.readouterr()
    assert sitegate("plugins", "list", "--verify", *state) == 1
    assert "REFUSED (not-found)" in capsys.readouterr().out


def test_publish_with_a_key_that_is_no_publisher_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert sitegate("registry", "init", "--registry", "reg") == 0
    assert sitegate("plugin", "keygen", "--name", "stranger") == 0
    write_plugin(tmp_path / "src", "demo", "1.0.0")
    capsys.readouterr()
    assert sitegate("plugin", "publish", "src/demo", "--key", "stranger.key", "--registry", "reg") == 1
    assert "is not the key of any publisher" in capsys.readouterr().err


def test_published_version_is_immutable_without_replace(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    sitegate("registry", "init", "--registry", "reg")
    sitegate("plugin", "keygen", "--name", "acme")
    sitegate("registry", "add-publisher", "acme", "acme.pub", "--registry", "reg")
    src = write_plugin(tmp_path / "src", "demo", "1.0.0")
    assert sitegate("plugin", "publish", "src/demo", "--key", "acme.key", "--registry", "reg") == 0
    (src / "__init__.py").write_text("VERSION = 'changed'\n")
    capsys.readouterr()
    assert sitegate("plugin", "publish", "src/demo", "--key", "acme.key", "--registry", "reg") == 1
    assert "bump the version" in capsys.readouterr().err


def test_install_of_unknown_plugin_names_it(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    sitegate("registry", "init", "--registry", "reg")
    capsys.readouterr()
    assert sitegate("plugins", "install", "nosuch", "--registry", "reg", "--state", "st") == 1
    assert "plugin 'nosuch': refused (not-found)" in capsys.readouterr().err


def test_devpublish_is_idempotent_and_sites_load_from_it(tmp_path, capsys):
    plugins_dir = tmp_path / "plugins"
    write_plugin(plugins_dir, "one", "1.0.0")
    write_plugin(plugins_dir, "two", "2.0.0")
    reg = tmp_path / "registry"
    assert devpublish_main([str(plugins_dir), str(reg)]) == 0
    out = capsys.readouterr().out
    assert "DEVELOPMENT KEY" in out and "published one 1.0.0" in out
    assert all(p.name.startswith("DEVELOPMENT-ONLY-") for p in (reg / "keys").iterdir())
    timestamp = (reg / "metadata" / "timestamp.json").read_bytes()
    assert devpublish_main([str(plugins_dir), str(reg)]) == 0
    assert "unchanged one 1.0.0" in capsys.readouterr().out
    assert (reg / "metadata" / "timestamp.json").read_bytes() == timestamp, "nothing changed, nothing re-signed"
    loaded = prepare_plugins(reg, tmp_path / "state", {"one": "", "two": "2.0.0"}, actor="test")
    assert sorted(loaded) == ["one", "two"]


def test_devpublish_reports_a_broken_plugin_and_publishes_the_rest(tmp_path, capsys):
    plugins_dir = tmp_path / "plugins"
    write_plugin(plugins_dir, "good", "1.0.0")
    bad = write_plugin(plugins_dir, "bad", "1.0.0")
    (bad / "manifest.json").write_text('{"domain": "bad", "version": "one"}')
    assert devpublish_main([str(plugins_dir), str(tmp_path / "registry")]) == 1
    out = capsys.readouterr().out
    assert "FAILED bad" in out and "published good 1.0.0" in out


@pytest.mark.parametrize("text,expected", [("modbus", ("modbus", "")), ("modbus==1.2.0", ("modbus", "==1.2.0")),
                                           ("modbus>=1.2,<2", ("modbus", ">=1.2,<2"))])
def test_install_argument_forms(text, expected):
    assert plugins.parse_requirement(text) == expected


def test_registry_verify_finds_a_tampered_artifact(lab, capsys):
    lab.publish("alpha")
    lab.publish("alpha", "1.1.0")
    assert sitegate("registry", "verify", "--registry", lab.repo.path) == 0
    [blob] = (lab.repo.targets_dir / "plugins" / "acme").glob("*.alpha-1.0.0.zip")
    data = bytearray(blob.read_bytes())
    data[-30] ^= 0xFF
    blob.write_bytes(bytes(data))
    capsys.readouterr()
    assert sitegate("registry", "verify", "--registry", lab.repo.path) == 1
    out = capsys.readouterr().out
    assert "ok  alpha 1.1.0" in out and "BAD plugin 'alpha': refused (artifact-hash)" in out


def test_site_file_decides_the_state_folder(lab, tmp_path, capsys):
    lab.publish("alpha")
    site = tmp_path / "sites" / "site.yaml"
    site.parent.mkdir()
    site.write_text("site: test\nruntime:\n  state_dir: st\nentries: []\n")
    assert sitegate("plugins", "install", "alpha", "--registry", lab.repo.path, "--site", site) == 0
    assert (tmp_path / "sites" / "st" / "plugins" / "installed" / "alpha" / "active.json").is_file()
