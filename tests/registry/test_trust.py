"""Trust anchors and keys: pinning, rotation the site follows, offline start, key files."""

from __future__ import annotations

import json

import pytest

from sitegate.registry import PluginRefused, prepare_plugins
from sitegate.registry.keys import NaclSigner, is_development_key, load_private_key, load_public_key, write_key_pair


def test_site_follows_root_and_targets_rotation(lab):
    lab.publish("alpha")
    prepare_plugins(lab.repo.path, lab.state, {"alpha": ""}, actor="test")
    for role in ("root", "targets", "timestamp"):
        new = NaclSigner.generate(f"{role}-2")
        lab.repo.rotate_key(role, new, lab.ring)
        lab.keys[role] = new
    lab.publish("alpha", "1.1.0")
    plugins = prepare_plugins(lab.repo.path, lab.state, {"alpha": "1.1.0"}, actor="test")
    assert plugins["alpha"].version == "1.1.0"
    trusted_root = json.loads((lab.state / "plugins/trust/metadata/root.json").read_text())
    assert trusted_root["signed"]["version"] == 4


def test_root_not_signed_by_the_old_root_is_refused(lab):
    lab.publish("alpha")
    prepare_plugins(lab.repo.path, lab.state, {"alpha": ""}, actor="test")
    # An attacker writes root v2 listing their own key, signed only by that key.
    root = lab.repo.root()
    evil = NaclSigner.generate("evil")
    for keyid in list(root.signed.roles["root"].keyids):
        root.signed.revoke_key(keyid, "root")
    root.signed.add_key(evil.public_key, "root")
    root.signed.version += 1
    root.signatures.clear()
    root.sign(evil)
    (lab.repo.metadata_dir / "2.root.json").write_bytes(root.to_bytes())
    with pytest.raises(PluginRefused) as info:
        prepare_plugins(lab.repo.path, lab.state, {"alpha": ""}, actor="test")
    assert info.value.check == "signature" and "root" in str(info.value)


def test_pinned_root_out_of_band_refuses_a_different_registry(lab, tmp_path):
    from sitegate.registry.repository import Repository

    other_keys = {n: NaclSigner.generate(n) for n in ("root", "targets", "snapshot", "timestamp")}
    other = Repository.init(tmp_path / "other", root=[other_keys["root"]], root_threshold=1,
                            targets=other_keys["targets"], snapshot=other_keys["snapshot"],
                            timestamp=other_keys["timestamp"])
    lab.publish("alpha")
    store = lab.store()
    assert "threshold 1" in store.pin_root((lab.repo.metadata_dir / "1.root.json").read_bytes())
    with pytest.raises(PluginRefused) as info:
        prepare_plugins(other.path, lab.state, {"alpha": ""}, actor="test")
    assert info.value.check == "signature"
    with pytest.raises(PluginRefused):
        store.pin_root(b'{"signed": {}}', replace=True)


def test_start_without_the_registry_folder_verifies_from_the_trusted_cache(lab):
    lab.publish("alpha")
    prepare_plugins(lab.repo.path, lab.state, {"alpha": ""}, actor="test")
    moved = lab.repo.path.rename(lab.tmp / "elsewhere")
    plugins = prepare_plugins(lab.tmp / "registry", lab.state, {"alpha": ""}, actor="test")
    assert plugins["alpha"].version == "1.0.0"
    (plugins["alpha"].path / "helpers.py").write_text("# changed\n")
    with pytest.raises(PluginRefused) as info:
        prepare_plugins(lab.tmp / "registry", lab.state, {"alpha": ""}, actor="test")
    assert info.value.check == "installed-files"
    assert moved.exists()


def test_planted_bytecode_is_removed_at_start(lab):
    lab.publish("alpha")
    plugin = lab.store().install("alpha")
    cache = plugin.path / "__pycache__"
    cache.mkdir()
    (cache / "helpers.cpython-311.pyc").write_bytes(b"not from the signed source")
    prepare_plugins(lab.repo.path, lab.state, {"alpha": ""}, actor="test")
    assert not cache.exists()


def test_failed_install_leaves_the_active_version_alone(lab, monkeypatch):
    import sitegate.registry.store as store_mod

    lab.publish("alpha")
    lab.store().install("alpha")
    lab.publish("alpha", "1.1.0")

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(store_mod, "_atomic_json", boom)
    with pytest.raises(OSError):
        lab.store().upgrade("alpha")
    monkeypatch.undo()
    assert lab.store().verify_installed("alpha").version == "1.0.0"


def test_key_files_round_trip_and_mark_development_keys(tmp_path):
    signer = NaclSigner.generate("acme")
    pub = write_key_pair(signer, tmp_path / "acme.key")
    assert load_private_key(tmp_path / "acme.key").keyid == signer.keyid
    assert load_public_key(pub).keyid == signer.keyid
    assert not is_development_key(pub)
    write_key_pair(signer, tmp_path / "dev.key", development=True)
    assert is_development_key(tmp_path / "dev.pub")
    with pytest.raises(ValueError, match="holds no private key"):
        load_private_key(pub)
    (tmp_path / "junk.key").write_text("{}")
    with pytest.raises(ValueError, match="junk.key: not a sitegate Ed25519 key file"):
        load_private_key(tmp_path / "junk.key")


def test_one_of_three_root_keys_is_rotated_keeping_the_threshold(tmp_path):
    from sitegate.registry.repository import Repository

    roots = [NaclSigner.generate(f"root-{i}") for i in range(3)]
    keys = {n: NaclSigner.generate(n) for n in ("targets", "snapshot", "timestamp")}
    repo = Repository.init(tmp_path / "reg", root=roots, root_threshold=2, **keys)
    from sitegate.registry.store import PluginStore

    state = tmp_path / "state"
    PluginStore(state, repo.path).index.refresh()  # the site pins root v1
    new = NaclSigner.generate("root-new")
    # Only two of the three old root keys are at hand: enough for the threshold.
    ring = {s.keyid: s for s in [roots[0], roots[1], *keys.values()]}
    repo.rotate_key("root", new, ring, old=roots[2].keyid[:10])
    role = repo.root().signed.roles["root"]
    assert role.threshold == 2 and roots[2].keyid not in role.keyids and new.keyid in role.keyids
    index = PluginStore(state, repo.path).index
    index.refresh()
    trusted = json.loads((state / "plugins/trust/metadata/root.json").read_text())
    assert trusted["signed"]["version"] == 2


def test_republishing_the_same_bytes_after_a_key_replacement_signs_them_with_the_new_key(lab):
    data = lab.publish("alpha")
    assert lab.repo.publish(data, lab.keys["acme"], lab.online)[1] is False      # unchanged: nothing to do
    new = NaclSigner.generate("acme-2")
    lab.repo.add_publisher("acme", new.public_key, lab.ring, replace=True)
    with pytest.raises(PluginRefused, match="signature"):
        prepare_plugins(lab.repo.path, lab.state, {"alpha": ""}, actor="test")
    lab.keys["acme"] = new
    assert lab.repo.publish(data, new, lab.online)[1] is True                     # signed again, same bytes
    assert prepare_plugins(lab.repo.path, lab.state, {"alpha": ""}, actor="test")["alpha"].version == "1.0.0"
    assert lab.repo.publish(data, new, lab.online)[1] is False
