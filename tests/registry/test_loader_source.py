"""The core's loader reading from the signed registry through `RegistrySource`."""

from __future__ import annotations

import pytest

from sitegate.errors import SitegateError
from sitegate.loader import Loader
from sitegate.registry import PluginRefused, RegistrySource


def test_loader_imports_verified_plugins_in_dependency_order(lab):
    lab.publish("base")
    lab.publish("top", dependencies=["base"])
    source = RegistrySource(lab.repo.path, lab.state, {"top": ">=1,<2"}, actor="test")
    loaded = Loader(source).load(["top"])
    assert [i.domain for i in loaded] == ["base", "top"]
    assert lab.ran() == ["base-1.0.0", "top-1.0.0"]
    assert loaded[1].path == lab.store().package_dir("top", "1.0.0")


def test_loader_runs_no_code_of_a_tampered_install(lab):
    lab.publish("alpha")
    lab.store().install("alpha")
    init = lab.store().package_dir("alpha", "1.0.0") / "__init__.py"
    init.write_text(init.read_text() + "\n# injected\n")
    source = RegistrySource(lab.repo.path, lab.state, {}, actor="test")
    with pytest.raises(SitegateError):
        Loader(source).load(["alpha"])
    assert lab.ran() == []
    assert source.refused["alpha"].check == "installed-files"
    [problem] = source.problems()
    assert "plugin 'alpha': refused (installed-files)" in problem.message


def test_one_refused_plugin_leaves_the_others_usable(lab):
    lab.publish("good")
    lab.publish("bad", requires=">=2.0,<3")
    lab.publish("needs_bad", dependencies=["bad"])
    source = RegistrySource(lab.repo.path, lab.state, {"good": "", "bad": "", "needs_bad": ""}, actor="test")
    assert list(source.available()) == ["good"]
    problems = {p.file.split("/")[-2]: p.message for p in source.problems()}
    assert set(problems) == {"bad", "needs_bad"}
    assert "refused (core-api)" in problems["bad"] and "needs 'bad', which was refused (core-api)" in problems["needs_bad"]
    with pytest.raises(PluginRefused):
        source.locate("bad")
    Loader(source).load(["good"])
    assert lab.ran() == ["good-1.0.0"]


def test_version_pin_given_as_a_number_is_understood(lab):
    lab.publish("alpha", "1.0.0")
    source = RegistrySource(lab.repo.path, lab.state, {"alpha": 1.0}, actor="test")
    assert source.prepare()["alpha"].version == "1.0.0"


def test_stage_then_abandon_or_commit_for_runtime_upgrade(lab):
    lab.publish("alpha")
    source = RegistrySource(lab.repo.path, lab.state, {"alpha": ""}, actor="test")
    loader = Loader(source)
    loader.load(["alpha"])
    lab.publish("alpha", "2.0.0", code="raise RuntimeError('broken release')\n")
    staged = source.stage("alpha")
    assert source.locate("alpha") == staged.path and staged.version == "2.0.0"
    assert lab.store().active("alpha")[0].version == "1.0.0", "staging does not activate"
    loader.unload_one("alpha")
    with pytest.raises(SitegateError, match="broken release"):
        loader.load_one("alpha")  # the core's health check fails here
    back = source.abandon("alpha")
    assert back.version == "1.0.0" and loader.load_one("alpha").module.VERSION == "1.0.0"
    lab.publish("alpha", "2.0.1")
    loader.unload_one("alpha")
    source.stage("alpha", ">=2.0.1")
    assert loader.load_one("alpha").module.VERSION == "2.0.1"
    assert source.commit("alpha").version == "2.0.1"
    assert lab.store().active("alpha")[0].version == "2.0.1"
    assert lab.store().active("alpha")[1].version == "1.0.0"
    actions = [e["action"] for e in lab.store().audit.entries()]
    assert actions == ["install", "stage", "stage", "activate"]
