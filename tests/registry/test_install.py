"""Verified install, start-up verification, upgrade, rollback and the audit log."""

from __future__ import annotations

import json

import pytest

from sitegate.registry import PluginRefused, prepare_plugins
from sitegate.registry.artifact import build_artifact


def test_install_gives_an_importable_verified_folder_with_manifest(lab, import_plugin):
    lab.publish("alpha")
    plugin = lab.store().install("alpha")
    assert plugin.version == "1.0.0"
    assert (plugin.path / "manifest.json").is_file() and (plugin.path / "__init__.py").is_file()
    assert not (plugin.path / "tests").exists(), "a plugin's own tests are not shipped"
    assert lab.ran() == [], "installing must not run plugin code"
    module = import_plugin(plugin.path, "alpha")
    assert module.VERSION == "1.0.0"
    assert lab.ran() == ["alpha-1.0.0"], "the marker proves the import-detection in other tests works"


def test_build_is_reproducible_byte_for_byte(lab):
    src = lab.write_plugin("alpha")
    _, first = build_artifact(src)
    for path in src.rglob("*"):
        path.touch()  # new mtimes must not change the bytes
    _, second = build_artifact(src)
    assert first == second


def test_start_up_reverifies_and_keeps_installed_version(lab):
    lab.publish("alpha")
    lab.store().install("alpha")
    lab.publish("alpha", "1.1.0")
    plugins = prepare_plugins(lab.repo.path, lab.state, {"alpha": ">=1.0,<2"}, actor="test")
    assert plugins["alpha"].version == "1.0.0", "start-up verifies what is installed; upgrades are explicit"


def test_upgrade_keeps_previous_and_rollback_is_one_step(lab):
    lab.publish("alpha")
    store = lab.store()
    store.install("alpha")
    lab.publish("alpha", "1.1.0")
    store = lab.store()
    assert store.upgrade("alpha").version == "1.1.0"
    assert store.verify_installed("alpha").version == "1.1.0"
    back = lab.store().rollback("alpha")
    assert back.version == "1.0.0"
    assert lab.store().verify_installed("alpha").version == "1.0.0"
    actions = [(e["action"], e["result"], e.get("version")) for e in lab.store().audit.entries()]
    assert actions == [("install", "ok", "1.0.0"), ("upgrade", "ok", "1.1.0"), ("rollback", "ok", "1.0.0")]
    entry = lab.store().audit.entries()[-1]
    assert entry["who"] == "test" and entry["from_version"] == "1.1.0" and "at" in entry


def test_pin_selects_exact_version(lab):
    lab.publish("alpha")
    lab.publish("alpha", "1.1.0")
    assert lab.store().install("alpha", "1.0.0").version == "1.0.0"
    assert lab.store().ensure("alpha", "==1.1.0").version == "1.1.0"


def test_stage_then_activate(lab):
    lab.publish("alpha")
    lab.store().install("alpha")
    lab.publish("alpha", "2.0.0")
    staged = lab.store().install("alpha", "2.0.0", activate=False)
    assert lab.store().verify_installed("alpha").version == "1.0.0"
    assert lab.store().activate("alpha", staged.version).version == "2.0.0"
    assert lab.store().verify_installed("alpha").version == "2.0.0"
    assert lab.store().rollback("alpha").version == "1.0.0"


def test_missing_requirement_is_refused_with_pip_hint(lab):
    lab.publish("alpha", requirements=["surely-not-installed-pkg>=1"])
    with pytest.raises(PluginRefused) as info:
        lab.store().install("alpha")
    assert info.value.check == "requirements"
    assert "surely-not-installed-pkg>=1" in str(info.value) and "alpha" in str(info.value)


def test_requirement_present_is_accepted(lab):
    lab.publish("alpha", requirements=["attrs>=20"])
    assert lab.store().install("alpha").version == "1.0.0"


def test_dependencies_are_installed_and_ordered_first(lab):
    lab.publish("base")
    lab.publish("top", dependencies=["base"])
    plugins = prepare_plugins(lab.repo.path, lab.state, {"top": ""}, actor="test")
    assert list(plugins) == ["base", "top"]


def test_republished_version_is_reinstalled_not_reported_as_tampered(lab):
    lab.publish("alpha")
    lab.store().install("alpha")
    _, data = build_artifact(lab.write_plugin("alpha", code="CHANGED = True\n"))
    lab.repo.publish(data, lab.keys["acme"], lab.online, replace=True)
    plugin = lab.store().verify_installed("alpha")
    assert "CHANGED" in (plugin.path / "__init__.py").read_text()
    assert json.loads((plugin.path / "manifest.json").read_text())["version"] == "1.0.0"


def test_prerelease_only_when_asked_for(lab):
    lab.publish("alpha", "1.0.0")
    lab.publish("alpha", "2.0.0-rc.1")
    assert lab.store().choose("alpha").version.public == "1.0.0"
    assert str(lab.store().choose("alpha", ">=2.0.0rc1").version) == "2.0.0rc1"


def test_publisher_name_cannot_shadow_a_top_level_role(lab):
    from sitegate.registry.repository import RegistryError
    from sitegate.registry.keys import NaclSigner

    with pytest.raises(RegistryError, match="reserved"):
        lab.repo.add_publisher("snapshot", NaclSigner.generate("x").public_key, lab.ring)


def test_newest_version_supporting_this_core_is_chosen(lab):
    lab.publish("alpha", "1.0.0")
    lab.publish("alpha", "2.0.0", requires=">=2.0,<3")
    assert lab.store().install("alpha").version == "1.0.0"
    assert lab.store(core_api="2.0").upgrade("alpha").version == "2.0.0"
