"""Device update artifacts in the signed registry, beside the plugins.

An update is published into its publisher's delegated role as
`plugins/<publisher>/update-<name>-<version>.bin`, with the signed update
envelope (sitegate.updates.artifact) in the target's `custom`. The gateway gets
it through the full TUF client workflow (fetch_update); the device checks the
envelope's own Ed25519 signature, made with the same publisher key.
"""

from __future__ import annotations

import hashlib

import nacl.signing
from tuf.api.metadata import Metadata, TargetFile, Targets

from ..updates.artifact import UpdateArtifact, verify_update
from ..updates.errors import UpdateRefused
from .client import TrustedIndex
from .errors import PluginRefused
from .keys import NaclSigner
from .repository import RegistryError, Repository, _now

DOMAIN = "updates"   # what TrustedIndex errors name


def update_path(publisher: str, name: str, version: str) -> str:
    return f"plugins/{publisher}/update-{name}-{version}.bin"


def publish_update(repo: Repository, artifact: UpdateArtifact, signer: NaclSigner,
                   keyring: dict[str, NaclSigner]) -> str:
    """Sign `artifact` into the role of the publisher whose key `signer` is; returns the target path.

    The envelope must already carry a signature by that same key, so what the
    registry vouches for and what the device verifies come from one publisher.
    """
    publishers = repo.publishers()
    owned = [name for name, role in publishers.items() if signer.keyid in role.keyids]
    if not owned:
        raise RegistryError(f"key {signer.keyid[:12]} is not the key of any publisher in {repo.path}")
    publisher = owned[0]
    trusted = {signer.keyid: nacl.signing.VerifyKey(bytes.fromhex(signer.public_key.keyval["public"]))}
    try:
        m = verify_update(artifact, trusted)
    except UpdateRefused as exc:
        raise RegistryError(f"update {artifact.ref}: {exc} (sign it with publisher {publisher!r}'s key)") from None
    path = update_path(publisher, m.name, m.version)
    digest = hashlib.sha256(artifact.payload).hexdigest()
    custom = {"update": dict(artifact.envelope), "publisher": publisher}
    md = repo.targets(publisher)
    if md is None:
        md = Metadata(Targets(expires=_now()))
        md.signed.version = 0
    existing = md.signed.targets.get(path)
    if existing is not None:
        if existing.hashes.get("sha256") == digest and existing.custom == custom:
            return path
        raise RegistryError(f"{path}: {m.name} {m.version} is already published with different bytes; "
                            "bump the version and the release counter (published updates are immutable)")
    blob = repo.targets_dir / f"plugins/{publisher}/{digest}.update-{m.name}-{m.version}.bin"
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(artifact.payload)
    md.signed.targets[path] = TargetFile(len(artifact.payload), {"sha256": digest}, path, {"custom": custom})
    md.signed.version += 1
    md.signed.expires = repo._expires(publisher)
    repo._write(md, publisher, [signer])
    repo.write_snapshot_and_timestamp(keyring, changed={publisher: md.signed.version})
    return path


def fetch_update(index: TrustedIndex, path: str) -> UpdateArtifact:
    """The artifact at `path`, through TUF (signatures, versions, expiry, length, hash). Raises UpdateRefused."""
    try:
        info = index.targetinfo(DOMAIN, path)
        payload = index.download(DOMAIN, info)
    except PluginRefused as exc:
        raise UpdateRefused("registry", f"{path}: {exc.check}: {exc.detail}") from None
    envelope = (info.custom or {}).get("update")
    if not isinstance(envelope, dict):
        raise UpdateRefused("registry", f"{path}: signed target carries no update envelope")
    artifact = UpdateArtifact(envelope, payload)
    if artifact.manifest.hashes.get("sha256") != info.hashes.get("sha256"):
        raise UpdateRefused("registry", f"{path}: envelope and registry disagree on the payload's sha256")
    return artifact


def publisher_keys(index: TrustedIndex) -> dict[str, nacl.signing.VerifyKey]:
    """Every trusted publisher's Ed25519 key by key id: what handlers and devices are provisioned with."""
    index.refresh()
    top = index._trusted("targets")
    keys = {}
    if top is not None and top.signed.delegations is not None:
        for keyid, key in (top.signed.delegations.keys or {}).items():
            keys[keyid] = nacl.signing.VerifyKey(bytes.fromhex(key.keyval["public"]))
    return keys
