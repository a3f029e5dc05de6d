"""The core's loader reading from the signed registry through `RegistrySource`."""

from __future__ import annotations

import pytest

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
    with pytest.raises(PluginRefused) as info:
        Loader(RegistrySource(lab.repo.path, lab.state, {}, actor="test")).load(["alpha"])
    assert info.value.check == "installed-files" and "alpha" in str(info.value)
    assert lab.ran() == []
