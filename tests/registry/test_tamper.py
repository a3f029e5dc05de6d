"""The tamper matrix: every attack is refused, names the plugin and the failed check, and runs no plugin code.

Each test tampers with a throwaway registry or install the way an attacker
could, then starts the site the way the core does (`prepare_plugins`). The
test plugins write a marker file when imported; `lab.ran()` stays empty.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from tuf.api.metadata import TargetFile

from sitegate.registry import PluginRefused, prepare_plugins
from sitegate.registry.artifact import build_artifact, sha256
from sitegate.registry.keys import NaclSigner


def start(lab, pins):
    return prepare_plugins(lab.repo.path, lab.state, pins, actor="test")


def refused(lab, pins, check, domain="alpha"):
    with pytest.raises(PluginRefused) as info:
        start(lab, pins)
    exc = info.value
    assert exc.check == check, f"expected check {check!r}, got {exc.check!r}: {exc}"
    assert exc.domain == domain and f"plugin {domain!r}" in str(exc)
    assert lab.ran() == [], "no plugin code may run before verification passes"
    audited = [(e["domain"], e["result"], e.get("check")) for e in lab.store().audit.entries()]
    assert (domain, "refused", check) in audited
    return exc


def blob_of(lab, domain, version="1.0.0", publisher="acme"):
    [blob] = (lab.repo.targets_dir / "plugins" / publisher).glob(f"*.{domain}-{version}.zip")
    return blob


def role_file(lab, role):
    version = lab.repo.snapshot().signed.meta[f"{role}.json"].version
    return lab.repo.metadata_dir / f"{version}.{role}.json"


def rewrite_role(lab, role, signer, edit, *, bump=True):
    """Write `role`'s metadata edited by `edit`, signed by `signer`, and (by default) publish it in a new snapshot."""
    md = lab.repo.targets(role)
    edit(md)
    if bump:
        md.signed.version += 1
    md.signatures.clear()
    md.sign(signer)
    (lab.repo.metadata_dir / f"{md.signed.version}.{role}.json").write_bytes(md.to_bytes())
    if bump:
        lab.repo.write_snapshot_and_timestamp(lab.online, changed={role: md.signed.version})


def add_target(lab, role, path, artifact):
    def edit(md):
        custom = dict(lab.repo.targets("acme").signed.targets["plugins/acme/alpha-1.0.0.zip"].custom)
        custom["version"] = path.rsplit("-", 1)[1].removesuffix(".zip")
        md.signed.targets[path] = TargetFile(len(artifact), {"sha256": sha256(artifact)}, path, {"custom": custom})
    return edit


# -- the artifact ----------------------------------------------------------------------------------

def test_byte_flipped_in_code_is_refused(lab):
    lab.publish("alpha")
    blob = blob_of(lab, "alpha")
    data = bytearray(blob.read_bytes())
    at = data.index(b"alpha/__init__.py") + len("alpha/__init__.py") + 3  # inside its compressed bytes
    data[at] ^= 0x01
    blob.write_bytes(bytes(data))
    exc = refused(lab, {"alpha": ""}, "artifact-hash")
    assert "alpha-1.0.0.zip" in str(exc)


def test_artifact_swapped_for_a_longer_one_is_refused(lab):
    lab.publish("alpha")
    _, evil = build_artifact(lab.write_plugin("alpha", code="import os  # evil\n"))
    blob_of(lab, "alpha").write_bytes(evil)
    refused(lab, {"alpha": ""}, "size")


def test_byte_flipped_in_manifest_is_refused(lab):
    lab.publish("alpha")
    data = bytearray(blob_of(lab, "alpha").read_bytes())
    at = data.index(b"alpha/manifest.json") + len("alpha/manifest.json") + 3  # inside its compressed bytes
    data[at] ^= 0x01
    blob_of(lab, "alpha").write_bytes(bytes(data))
    refused(lab, {"alpha": ""}, "artifact-hash")


# -- signed metadata -------------------------------------------------------------------------------

def test_byte_flipped_in_signed_metadata_is_refused(lab):
    lab.publish("alpha")
    path = role_file(lab, "acme")
    text = path.read_text()
    assert '"calculated"' not in text  # iot_class is not a signed fact; flip a signed one instead
    flipped = text.replace('"name": "Alpha"', '"name": "Alphb"', 1)
    assert flipped != text
    path.write_text(flipped)
    refused(lab, {"alpha": ""}, "signature")


def test_signature_by_unknown_key_is_refused(lab):
    lab.publish("alpha")
    # An attacker re-signs the publisher's metadata (same version, listed by the snapshot) with their own key.
    rewrite_role(lab, "acme", NaclSigner.generate("mallory"), lambda md: None, bump=False)
    refused(lab, {"alpha": ""}, "signature")


def test_signature_by_revoked_key_is_refused(lab):
    lab.publish("alpha")
    old = lab.keys["acme"]
    new = NaclSigner.generate("acme-2")
    lab.repo.add_publisher("acme", new.public_key, lab.ring, replace=True)  # the old key is revoked
    _, evil = build_artifact(lab.write_plugin("alpha", "1.0.1", code="# evil\n"))
    # Even with the registry's online keys cooperating, metadata signed by the revoked key is refused.
    rewrite_role(lab, "acme", old, add_target(lab, "acme", "plugins/acme/alpha-1.0.1.zip", evil))
    exc = refused(lab, {"alpha": ""}, "signature")
    assert "acme" in str(exc)


def test_publisher_signing_outside_its_delegated_path_is_refused(lab):
    lab.publish("alpha")
    mallory = lab.add_publisher("mallory")
    lab.publish("other", publisher="mallory")  # mallory's role exists and is in the snapshot
    _, evil = build_artifact(lab.write_plugin("alpha", "9.0.0", code="# evil\n"))
    rewrite_role(lab, "mallory", mallory, add_target(lab, "mallory", "plugins/acme/alpha-9.0.0.zip", evil))
    exc = refused(lab, {"alpha": ""}, "delegation")
    assert "mallory" in str(exc) and "plugins/mallory/*" in str(exc)


@pytest.mark.parametrize("what", ["timestamp", "publisher"])
def test_expired_metadata_is_refused(lab, what):
    past = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(days=1)
    if what == "timestamp":
        lab.publish("alpha")
        lab.repo.write_snapshot_and_timestamp(lab.online, expires=past)
    else:
        _, data = build_artifact(lab.write_plugin("alpha"))
        lab.repo.publish(data, lab.keys["acme"], lab.online, expires=past)
    exc = refused(lab, {"alpha": ""}, "expired")
    assert "expired" in str(exc)


def test_older_metadata_replayed_is_refused(lab):
    lab.publish("alpha")
    old_timestamp = (lab.repo.metadata_dir / "timestamp.json").read_bytes()
    lab.publish("alpha", "1.1.0")
    start(lab, {"alpha": ""})  # the site now trusts the newer timestamp
    (lab.repo.metadata_dir / "timestamp.json").write_bytes(old_timestamp)  # replay the old, validly signed one
    exc = refused(lab, {"alpha": ""}, "rollback")
    assert "must be >=" in str(exc)


def test_targets_from_an_old_snapshot_are_refused(lab):
    lab.publish("alpha")
    start(lab, {"alpha": ""})
    old_role = role_file(lab, "acme").read_bytes()
    lab.publish("alpha", "1.1.0")
    # Mix and match: the new snapshot names acme v2, the attacker serves acme v1 under that name.
    role_file(lab, "acme").write_bytes(old_role)
    refused(lab, {"alpha": ">=1.1"}, "mix-and-match")


def test_oversized_metadata_is_refused(lab):
    lab.publish("alpha")
    path = lab.repo.metadata_dir / "timestamp.json"
    path.write_bytes(path.read_bytes() + b" " * 20_000)  # endless data: more than any timestamp may be
    exc = refused(lab, {"alpha": ""}, "size")
    assert "exceeding" in str(exc)


# -- compatibility and dependencies ------------------------------------------------------------------

def test_core_api_range_excluding_this_core_is_refused(lab):
    lab.publish("alpha", requires=">=2.0,<3")
    exc = refused(lab, {"alpha": ""}, "core-api")
    assert ">=2.0,<3" in str(exc) and "1.0" in str(exc)


def test_core_api_refused_before_download(lab):
    lab.publish("alpha", requires=">=2.0,<3")
    blob_of(lab, "alpha").unlink()  # were it downloaded, this would fail as not-found/registry instead
    refused(lab, {"alpha": ""}, "core-api")


def test_dependency_cycle_across_plugins_is_refused(lab):
    lab.publish("alpha", dependencies=["beta"])
    lab.publish("beta", dependencies=["alpha"])
    exc = refused(lab, {"alpha": ""}, "dependencies")
    assert "dependency cycle: alpha -> beta -> alpha" in str(exc)


def test_missing_dependency_is_refused(lab):
    lab.publish("alpha", dependencies=["ghost"])
    exc = refused(lab, {"alpha": ""}, "dependencies")
    assert "ghost" in str(exc) and "missing dependency" in str(exc)


# -- after install -------------------------------------------------------------------------------------

def test_installed_file_changed_on_disk_is_refused_at_start(lab):
    lab.publish("alpha")
    plugin = lab.store().install("alpha")
    init = plugin.path / "helpers.py"
    data = bytearray(init.read_bytes())
    data[0] ^= 0x01
    init.write_bytes(bytes(data))
    exc = refused(lab, {"alpha": ""}, "installed-files")
    assert "helpers.py changed after install" in str(exc)


def test_file_added_to_install_is_refused_at_start(lab):
    lab.publish("alpha")
    plugin = lab.store().install("alpha")
    (plugin.path / "sneaky.py").write_text("print('hi')\n")
    exc = refused(lab, {"alpha": ""}, "installed-files")
    assert "sneaky.py" in str(exc)


def test_rollback_target_tampered_is_refused(lab):
    lab.publish("alpha")
    lab.store().install("alpha")
    lab.publish("alpha", "1.1.0")
    lab.store().upgrade("alpha")
    (lab.store().package_dir("alpha", "1.0.0") / "__init__.py").write_text("# evil\n")
    with pytest.raises(PluginRefused) as info:
        lab.store().rollback("alpha")
    assert info.value.check == "installed-files"
    assert lab.store().verify_installed("alpha").version == "1.1.0", "a refused rollback changes nothing"


def test_revoked_publisher_plugins_are_refused_at_start(lab):
    lab.publish("alpha")
    lab.store().install("alpha")
    lab.repo.revoke_publisher("acme", lab.ring)
    exc = refused(lab, {"alpha": ""}, "not-found")
    assert "publisher revoked" in str(exc)


def test_another_publisher_cannot_take_over_an_installed_domain(lab):
    lab.publish("alpha")
    lab.store().install("alpha")
    lab.add_publisher("mallory")
    lab.publish("alpha", "9.0.0", publisher="mallory")  # in mallory's own namespace: validly signed
    assert lab.store().upgrade("alpha") is None, "upgrade stays with acme, which has nothing newer"
    assert start(lab, {"alpha": ""})["alpha"].publisher == "acme"
    assert lab.ran() == []


def test_domain_signed_by_two_publishers_is_refused_on_first_install(lab):
    lab.publish("alpha")
    lab.add_publisher("mallory")
    lab.publish("alpha", "9.0.0", publisher="mallory")
    exc = refused(lab, {"alpha": ""}, "delegation")
    assert "acme, mallory" in str(exc)


def test_signed_artifact_escaping_its_folder_is_refused(lab):
    """A malicious publisher signs a zip whose entry climbs out of the install folder (zip slip)."""
    import io
    import zipfile

    lab.publish("alpha")
    good = blob_of(lab, "alpha").read_bytes()
    buffer = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(good)) as src, zipfile.ZipFile(buffer, "w") as out:
        for name in src.namelist():
            out.writestr(name, src.read(name))
        out.writestr("alpha/../../../../escaped.py", "print('escaped')\n")
    evil = buffer.getvalue()
    (lab.repo.targets_dir / "plugins/acme" / f"{sha256(evil)}.alpha-1.0.1.zip").write_bytes(evil)
    rewrite_role(lab, "acme", lab.keys["acme"], add_target(lab, "acme", "plugins/acme/alpha-1.0.1.zip", evil))
    exc = refused(lab, {"alpha": ""}, "manifest")
    assert "unsafe entry" in str(exc)
    assert not list(lab.tmp.rglob("escaped.py"))


def test_withheld_publisher_metadata_is_refused(lab):
    lab.publish("alpha")
    role_file(lab, "acme").unlink()
    exc = refused(lab, {"alpha": ""}, "registry")
    assert "acme" in str(exc) and "not found" in str(exc)


def test_unparseable_metadata_is_refused(lab):
    lab.publish("alpha")
    role_file(lab, "acme").write_text('{"signed": ')
    refused(lab, {"alpha": ""}, "registry")
