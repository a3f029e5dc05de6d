"""Update artifacts in the signed registry: published by a publisher, fetched through TUF."""

from __future__ import annotations

import nacl.signing
import pytest

from sitegate.registry.client import TrustedIndex
from sitegate.registry.keys import NaclSigner
from sitegate.registry.repository import RegistryError, Repository
from sitegate.registry.updates import fetch_update, publish_update, publisher_keys
from sitegate.updates import UpdateRefused, sign_update, verify_update


@pytest.fixture
def registry(tmp_path):
    keys = {n: NaclSigner.generate(n) for n in ("root", "targets", "snapshot", "timestamp")}
    repo = Repository.init(tmp_path / "registry", root=[keys["root"]], root_threshold=1, targets=keys["targets"],
                           snapshot=keys["snapshot"], timestamp=keys["timestamp"])
    acme = NaclSigner.generate("acme")
    repo.add_publisher("acme", acme.public_key, {s.keyid: s for s in keys.values()})
    online = {s.keyid: s for n, s in keys.items() if n in ("snapshot", "timestamp")}
    return repo, acme, online, tmp_path


def test_update_published_and_fetched_through_tuf(registry):
    repo, acme, online, tmp = registry
    artifact = sign_update(b"firmware" * 1000, acme._signing_key, name="th-node-fw", version="1.2.0",
                           release_counter=3, hardware_ids=["th-v1"])
    path = publish_update(repo, artifact, acme, online)
    assert path == "plugins/acme/update-th-node-fw-1.2.0.bin"
    index = TrustedIndex(repo.path, tmp / "trust")
    fetched = fetch_update(index, path)
    assert fetched.payload == artifact.payload and fetched.envelope == artifact.envelope
    trusted = publisher_keys(index)
    assert acme.keyid in trusted
    assert verify_update(fetched, trusted, hardware_id="th-v1", current_counter=2).version == "1.2.0"


def test_registry_refuses_foreign_signature_and_catches_altered_payload(registry):
    repo, acme, online, tmp = registry
    stranger = nacl.signing.SigningKey.generate()
    foreign = sign_update(b"x" * 100, stranger, name="fw", version="1.0.1", release_counter=2, hardware_ids=["a"])
    with pytest.raises(RegistryError, match="signature"):
        publish_update(repo, foreign, acme, online)
    good = sign_update(b"y" * 100, acme._signing_key, name="fw", version="1.0.1", release_counter=2, hardware_ids=["a"])
    path = publish_update(repo, good, acme, online)
    blob = next((repo.targets_dir / "plugins/acme").glob("*.update-fw-1.0.1.bin"))
    blob.write_bytes(b"z" * 100)   # someone alters the file on the registry disk
    with pytest.raises(UpdateRefused, match="registry"):
        fetch_update(TrustedIndex(repo.path, tmp / "trust"), path)


def test_cli_starts_a_rollout_from_the_registry(registry, capsys):
    from sitegate.cli import main
    from sitegate.updates.store import RolloutStore
    repo, acme, online, tmp = registry
    artifact = sign_update(b"fw" * 500, acme._signing_key, name="th-node-fw", version="1.3.0", release_counter=4,
                           hardware_ids=["th-v1"])
    path = publish_update(repo, artifact, acme, online)
    state = tmp / "state"
    assert main(["rollout", "start", "--state", str(state), "--target", path, "--registry", str(repo.path),
                 "--entry", "nodes", "--id", "r9"]) == 0
    assert RolloutStore(state).get("r9")["state"] == "created"
    assert main(["rollout", "start", "--state", str(state), "--target", "plugins/acme/update-nope-1.0.bin",
                 "--registry", str(repo.path), "--entry", "nodes"]) == 1
    assert "error: registry: plugins/acme/update-nope-1.0.bin" in capsys.readouterr().out
