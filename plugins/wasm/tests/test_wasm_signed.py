"""Modules are registry artifacts: signed by a publisher, pinned by version, verified at every load;
an unsigned or tampered module never runs."""

from __future__ import annotations

import pytest

from sitegate.model import Batch
from sitegate.registry.modules import ModuleRefused
from sitegate.registry.repository import RegistryError
from sitegate.registry.store import PluginStore
from sitegate.structure import structure

from plugins.wasm.processor import WasmParams, WasmProcessor
from wasm_helpers import Ctx, wasm_bytes


def signed_step(lab, module="acme/moving_average", version="1.0.0", **params):
    ctx = Ctx(modules=lab.store())
    p = structure({"module": module, "version": version, **params}, WasmParams)
    return WasmProcessor(p, ctx)


def test_signed_module_runs_and_is_cached_verified(lab):
    step = signed_step(lab, config={"window": 2})
    assert step.label == "acme/moving_average 1.0.0"
    assert step.process(Batch("d", ["x", "x"], [2.0, 4.0], [1.0, 2.0])).values == [2.0, 3.0]
    cached = lab.state / "plugins" / "modules" / "acme" / "moving_average" / "1.0.0.wasm"
    assert cached.read_bytes() == wasm_bytes("moving_average.wat")
    signed_step(lab)                            # second load: from the cache, re-hashed


def test_tampered_module_in_the_registry_is_refused(lab):
    blob = next((lab.repo.targets_dir / "plugins" / "acme").glob("*.moving_average-1.0.0.wasm"))
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF
    blob.write_bytes(bytes(data))
    with pytest.raises(ModuleRefused, match=r"wasm module 'acme/moving_average': refused \(artifact-hash\)"):
        signed_step(lab)
    assert not (lab.state / "plugins" / "modules" / "acme" / "moving_average" / "1.0.0.wasm").exists()


def test_tampered_cached_module_is_refused(lab):
    signed_step(lab)
    cached = lab.state / "plugins" / "modules" / "acme" / "moving_average" / "1.0.0.wasm"
    cached.write_bytes(wasm_bytes("loop_forever.wat"))
    with pytest.raises(ModuleRefused, match=r"refused \(installed-files\): .*1\.0\.0\.wasm changed after it was verified"):
        signed_step(lab)


def test_unpublished_version_is_refused(lab):
    with pytest.raises(ModuleRefused, match=r"refused \(not-found\): plugins/acme/moving_average-9\.9\.9\.wasm is not "
                                            r"signed by any trusted publisher"):
        signed_step(lab, version="9.9.9")


def test_a_publisher_cannot_sign_into_another_publishers_name(lab):
    # `other` publishes moving_average too: it lands under plugins/other/, never under acme/.
    path = lab.publish("moving_average", "2.0.0", wasm_bytes("garbage.wat"), publisher="other")
    assert path == "plugins/other/moving_average-2.0.0.wasm"
    with pytest.raises(ModuleRefused, match="not-found"):
        signed_step(lab, version="2.0.0")
    assert signed_step(lab, module="other/moving_average", version="2.0.0").label == "other/moving_average 2.0.0"


def test_published_versions_are_immutable(lab):
    with pytest.raises(RegistryError, match="already published with different bytes"):
        lab.publish("moving_average", "1.0.0", wasm_bytes("threshold.wat"))
    with pytest.raises(RegistryError, match="not a WebAssembly binary"):
        lab.publish("text", "1.0.0", b"(module)")


def test_modules_are_not_plugins(lab):
    store = PluginStore(lab.state, lab.repo.path)
    assert store.index.candidates("moving_average") == []


def test_module_path_needs_unsigned_dev(tmp_path):
    with pytest.raises(ValueError, match=r"module_path: loads an UNSIGNED module; allowed only with "
                                         r"`unsigned_dev: true`"):
        WasmProcessor(structure({"module_path": "m.wat"}, WasmParams), Ctx())


def test_a_step_names_either_a_signed_module_with_version_or_a_path():
    with pytest.raises(Exception, match="needs an exact `version:`"):
        structure({"module": "acme/moving_average"}, WasmParams)
    with pytest.raises(Exception, match="not both"):
        structure({"module": "acme/m", "version": "1.0.0", "module_path": "m.wat", "unsigned_dev": True}, WasmParams)


def test_signed_module_without_a_registry_says_how_to_get_one():
    p = structure({"module": "acme/moving_average", "version": "1.0.0"}, WasmParams)
    with pytest.raises(ValueError, match="run with --registry DIR"):
        WasmProcessor(p, Ctx())


def test_bad_module_reference_is_refused(lab):
    with pytest.raises(ModuleRefused, match=r"expected <publisher>/<name>"):
        signed_step(lab, module="Acme Moving")


def test_yaml_number_version_is_a_pin(lab):
    lab.publish("threshold", "1.0", wasm_bytes("threshold.wat"))
    assert signed_step(lab, module="acme/threshold", version=1.0).label == "acme/threshold 1.0"


def test_registry_owner_can_list_and_verify_modules(lab, capsys):
    from sitegate.registry.modules import published_modules, verify_modules

    assert [(m.publisher, m.name, m.version) for m in published_modules(lab.repo)] == [
        ("acme", "moving_average", "1.0.0"), ("acme", "threshold", "1.0.0")]
    assert verify_modules(lab.repo.path) == []
    blob = next((lab.repo.targets_dir / "plugins" / "acme").glob("*.threshold-1.0.0.wasm"))
    blob.write_bytes(b"\0asm" + bytes(blob.stat().st_size - 4))
    (problem,) = verify_modules(lab.repo.path)
    assert problem.startswith("wasm module 'acme/threshold' 1.0.0: refused (artifact-hash)")
