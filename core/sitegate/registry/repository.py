"""The registry owner's side: TUF metadata in a local folder, written with python-tuf.

Layout of a registry folder (consistent snapshots, so readers never see a
half-published state: timestamp.json is replaced last):

    metadata/N.root.json  timestamp.json  N.snapshot.json  N.targets.json  N.<publisher>.json
    targets/plugins/<publisher>/<sha256>.<domain>-<version>.zip

Roles: root (offline, threshold), targets (delegates `plugins/<publisher>/*`
to one role per publisher), snapshot and timestamp (online). client.py reads
this folder; keys.py signs; artifact.py builds what gets published.
"""

from __future__ import annotations

import os
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterable

import attrs
from securesystemslib.signer import Key
from tuf.api.metadata import (
    DelegatedRole,
    Delegations,
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization.json import JSONSerializer

from ..errors import ConfigError
from ..manifest import Manifest
from ..structure import structure
from .artifact import artifact_manifest, artifact_name, file_hashes, sha256
from .keys import NaclSigner

TOP_ROLES = ("root", "targets", "snapshot", "timestamp")
ONLINE_ROLES = ("snapshot", "timestamp")
# Days until each role's metadata expires. Short for the online roles: a frozen
# registry (nobody re-signs timestamp) is noticed within a week.
DEFAULT_EXPIRY_DAYS = {"root": 365, "targets": 365, "snapshot": 30, "timestamp": 7, "publisher": 365}
# Facts copied from the manifest into each target's signed `custom` field.
CUSTOM_FACTS = ("domain", "name", "version", "kinds", "requires", "dependencies", "after_dependencies",
                "requirements")


class RegistryError(Exception):
    """A registry owner or publisher operation that cannot be done, with the reason."""


@attrs.frozen(slots=True)
class PublishedPlugin:
    publisher: str
    path: str
    domain: str
    version: str
    kinds: tuple[str, ...]
    length: int
    sha256: str


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def publisher_paths(name: str) -> list[str]:
    return [f"plugins/{name}/*"]


def target_custom(artifact: bytes, publisher: str, where: str) -> tuple[dict, str]:
    """The signed `custom` facts for an artifact, and its domain."""
    try:
        raw = artifact_manifest(artifact, where)
    except ValueError as exc:
        raise RegistryError(str(exc)) from None
    try:
        manifest = structure(raw, Manifest, file=f"{where}:manifest.json")
    except ConfigError as exc:
        raise RegistryError(str(exc)) from None
    custom = {fact: getattr(manifest, fact) for fact in CUSTOM_FACTS}
    custom["publisher"] = publisher
    try:
        custom["files"] = file_hashes(artifact, manifest.domain, where)
    except ValueError as exc:
        raise RegistryError(str(exc)) from None
    return custom, manifest.domain


class Repository:
    """One registry folder. Methods that change metadata take the signers they need."""

    def __init__(self, path: Path, *, expiry_days: dict[str, int] | None = None):
        self.path = Path(path)
        self.metadata_dir = self.path / "metadata"
        self.targets_dir = self.path / "targets"
        self.expiry_days = {**DEFAULT_EXPIRY_DAYS, **(expiry_days or {})}
        self.serializer = JSONSerializer(compact=False)

    # -- reading the current state -------------------------------------------------------------
    def exists(self) -> bool:
        return (self.metadata_dir / "timestamp.json").is_file()

    def _read(self, filename: str) -> Metadata:
        path = self.metadata_dir / filename
        try:
            return Metadata.from_bytes(path.read_bytes())
        except FileNotFoundError:
            raise RegistryError(f"{path}: missing (is {self.path} a registry? run `sitegate registry init`)") from None
        except Exception as exc:  # noqa: BLE001 - any parse problem: say which file
            raise RegistryError(f"{path}: cannot be read as TUF metadata ({exc})") from None

    def root(self) -> Metadata[Root]:
        versions = [int(p.name.split(".", 1)[0]) for p in self.metadata_dir.glob("*.root.json")
                    if p.name.split(".", 1)[0].isdigit()]
        if not versions:
            raise RegistryError(f"{self.metadata_dir}: no N.root.json (run `sitegate registry init`)")
        return self._read(f"{max(versions)}.root.json")

    def timestamp(self) -> Metadata[Timestamp]:
        return self._read("timestamp.json")

    def snapshot(self) -> Metadata[Snapshot]:
        return self._read(f"{self.timestamp().signed.snapshot_meta.version}.snapshot.json")

    def targets(self, role: str = "targets") -> Metadata[Targets] | None:
        meta = self.snapshot().signed.meta.get(f"{role}.json")
        if meta is None:
            return None
        return self._read(f"{meta.version}.{role}.json")

    def publishers(self) -> dict[str, DelegatedRole]:
        delegations = self.targets().signed.delegations
        return dict(delegations.roles or {}) if delegations else {}

    # -- writing -------------------------------------------------------------------------------
    def _expires(self, role: str, days: float | None = None) -> datetime:
        key = role if role in TOP_ROLES else "publisher"
        return _now() + timedelta(days=self.expiry_days[key] if days is None else days)

    def _signers(self, keyring: dict[str, NaclSigner], keyids: Iterable[str], threshold: int, role: str) -> list[NaclSigner]:
        found = [keyring[k] for k in keyids if k in keyring]
        if len(found) < threshold:
            raise RegistryError(f"signing {role}: need {threshold} of its keys, have {len(found)} "
                                f"(keyids {', '.join(k[:12] for k in keyids)}); pass the folder holding them with --keys")
        return found

    def _role_signers(self, role: str, keyring: dict[str, NaclSigner], root: Metadata[Root] | None = None) -> list[NaclSigner]:
        root = root or self.root()
        r = root.signed.roles[role]
        return self._signers(keyring, r.keyids, r.threshold, role)

    def _write(self, md: Metadata, role: str, signers: Iterable[NaclSigner], *, versioned: bool = True) -> Path:
        md.signatures.clear()
        for signer in signers:
            md.sign(signer, append=True)
        name = f"{md.signed.version}.{role}.json" if versioned else f"{role}.json"
        path = self.metadata_dir / name
        _atomic_write(path, md.to_bytes(self.serializer))
        return path

    def write_snapshot_and_timestamp(self, keyring: dict[str, NaclSigner], *, changed: dict[str, int] | None = None,
                                     expires: datetime | None = None) -> int:
        """Re-sign snapshot (with the current version of every targets role) then timestamp.

        Writes timestamp.json last: until then clients keep seeing the previous
        consistent state. Returns the new timestamp version.
        """
        root = self.root()
        if self.exists():
            snapshot = self.snapshot()
            timestamp = self.timestamp()
        else:
            snapshot = Metadata(Snapshot(expires=_now()))
            timestamp = Metadata(Timestamp(expires=_now()))
            snapshot.signed.version = timestamp.signed.version = 0  # bumped to 1 below
        for role, version in (changed or {}).items():
            snapshot.signed.meta[f"{role}.json"] = MetaFile(version=version)
        snapshot.signed.version += 1
        snapshot.signed.expires = expires or self._expires("snapshot")
        self._write(snapshot, "snapshot", self._role_signers("snapshot", keyring, root))
        timestamp.signed.snapshot_meta = MetaFile(version=snapshot.signed.version)
        timestamp.signed.version += 1
        timestamp.signed.expires = expires or self._expires("timestamp")
        self._write(timestamp, "timestamp", self._role_signers("timestamp", keyring, root), versioned=False)
        return timestamp.signed.version

    @classmethod
    def init(cls, path: Path, *, root: list[NaclSigner], root_threshold: int, targets: NaclSigner,
             snapshot: NaclSigner, timestamp: NaclSigner, expiry_days: dict[str, int] | None = None) -> Repository:
        repo = cls(path, expiry_days=expiry_days)
        if repo.metadata_dir.exists() and any(repo.metadata_dir.iterdir()):
            raise RegistryError(f"{repo.metadata_dir}: already holds metadata; refusing to overwrite a registry")
        if not 1 <= root_threshold <= len(root):
            raise RegistryError(f"root threshold {root_threshold} needs 1..{len(root)} root keys")
        root_md = Metadata(Root(expires=repo._expires("root"), consistent_snapshot=True))
        for signer in root:
            root_md.signed.add_key(signer.public_key, "root")
        root_md.signed.roles["root"].threshold = root_threshold
        for role, signer in (("targets", targets), ("snapshot", snapshot), ("timestamp", timestamp)):
            root_md.signed.add_key(signer.public_key, role)
        repo._write(root_md, "root", root)
        targets_md = Metadata(Targets(expires=repo._expires("targets")))
        targets_md.signed.delegations = Delegations(keys={}, roles={})
        repo._write(targets_md, "targets", [targets])
        repo.targets_dir.mkdir(parents=True, exist_ok=True)
        keyring = {s.keyid: s for s in (snapshot, timestamp)}
        repo.write_snapshot_and_timestamp(keyring, changed={"targets": 1})
        return repo

    def _bump_targets(self, md: Metadata[Targets], keyring: dict[str, NaclSigner]) -> int:
        md.signed.version += 1
        md.signed.expires = self._expires("targets")
        self._write(md, "targets", self._role_signers("targets", keyring))
        return md.signed.version

    def add_publisher(self, name: str, key: Key, keyring: dict[str, NaclSigner], *, replace: bool = False) -> None:
        """Delegate `plugins/<name>/*` to `key`; with replace, the publisher's old keys are revoked."""
        if not name or not name.replace("_", "").replace("-", "").isalnum() or not name.islower():
            raise RegistryError(f"publisher name {name!r}: expected lowercase letters, digits, '-' or '_'")
        if name in TOP_ROLES:
            raise RegistryError(f"publisher name {name!r} is reserved for a top-level role")
        md = self.targets()
        roles = md.signed.delegations.roles
        if name in roles:
            if not replace:
                raise RegistryError(f"publisher {name!r} already exists (use rotate-key or --replace to change its key)")
            for keyid in list(roles[name].keyids):
                md.signed.revoke_key(keyid, name)
        else:
            roles[name] = DelegatedRole(name, [], 1, True, publisher_paths(name))
        md.signed.add_key(key, name)
        version = self._bump_targets(md, keyring)
        self.write_snapshot_and_timestamp(keyring, changed={"targets": version})

    def revoke_publisher(self, name: str, keyring: dict[str, NaclSigner]) -> None:
        """Remove the delegation: nothing that publisher signed is trusted any more."""
        md = self.targets()
        roles = md.signed.delegations.roles
        if name not in roles:
            raise RegistryError(f"publisher {name!r} does not exist (known: {', '.join(sorted(roles)) or 'none'})")
        for keyid in list(roles[name].keyids):
            md.signed.revoke_key(keyid, name)
        del roles[name]
        version = self._bump_targets(md, keyring)
        # The snapshot keeps an entry for the old role: TUF clients refuse a snapshot that drops one.
        self.write_snapshot_and_timestamp(keyring, changed={"targets": version})

    def rotate_key(self, role: str, new: NaclSigner, keyring: dict[str, NaclSigner], *, old: str | None = None) -> None:
        """Replace a top-level role's key with `new`: the one whose keyid starts with `old`, or all of them.

        A new root version is written, signed by the old root's threshold and the new one's, so
        sites follow it. Replacing one of several root keys keeps the threshold.
        """
        if role not in TOP_ROLES:
            raise RegistryError(f"rotate-key: role must be one of {', '.join(TOP_ROLES)}, got {role!r} "
                                "(a publisher's key changes with `add-publisher NAME KEYFILE --replace`)")
        root = self.root()
        old_root_signers = self._role_signers("root", keyring, root)
        keyids = list(root.signed.roles[role].keyids)
        if old:
            keyids = [k for k in keyids if k.startswith(old)]
            if len(keyids) != 1:
                raise RegistryError(f"rotate-key {role}: {old!r} matches {len(keyids)} of its keys "
                                    f"({', '.join(k[:12] for k in root.signed.roles[role].keyids)})")
        for keyid in keyids:
            root.signed.revoke_key(keyid, role)
        root.signed.add_key(new.public_key, role)
        r = root.signed.roles[role]
        r.threshold = min(r.threshold, len(r.keyids))
        root.signed.version += 1
        root.signed.expires = self._expires("root")
        # The client accepts a new root only if signed by the old root's threshold and by the new one.
        signers = {s.keyid: s for s in old_root_signers}
        signers.update({s.keyid: s for s in self._role_signers("root", {**keyring, new.keyid: new}, root)})
        self._write(root, "root", signers.values())
        keyring = {**keyring, new.keyid: new}
        changed = {}
        if role == "targets":
            changed["targets"] = self._bump_targets(self.targets(), keyring)
        self.write_snapshot_and_timestamp(keyring, changed=changed)

    def publish(self, artifact: bytes, signer: NaclSigner, keyring: dict[str, NaclSigner], *,
                replace: bool = False, expires: datetime | None = None) -> tuple[PublishedPlugin, bool]:
        """Sign `artifact` into the publisher role whose key `signer` is; returns (plugin, changed)."""
        publishers = self.publishers()
        owned = [name for name, role in publishers.items() if signer.keyid in role.keyids]
        if not owned:
            raise RegistryError(f"key {signer.keyid[:12]} is not the key of any publisher in {self.path} "
                                f"(publishers: {', '.join(sorted(publishers)) or 'none'}; "
                                "the registry owner runs `sitegate registry add-publisher NAME KEYFILE`)")
        publisher = owned[0]
        custom, domain = target_custom(artifact, publisher, "artifact")
        path = f"plugins/{publisher}/{artifact_name(domain, custom['version'])}"
        digest = sha256(artifact)
        md = self.targets(publisher)
        if md is None:
            md = Metadata(Targets(expires=_now()))
            md.signed.version = 0  # bumped to 1 below
        existing = md.signed.targets.get(path)
        result = PublishedPlugin(publisher, path, domain, custom["version"], tuple(custom["kinds"]), len(artifact), digest)
        role = publishers[publisher]
        same = existing is not None and existing.hashes.get("sha256") == digest and existing.custom == custom
        if same and sum(keyid in role.keyids for keyid in md.signatures) >= role.threshold:
            return result, False
        # Same bytes whose signature is by a key the owner has since replaced (`add-publisher
        # --replace`): sites refuse them until they are signed again, which is what follows.
        if existing is not None and not same and not replace:
            raise RegistryError(f"{path}: version {custom['version']} is already published with different bytes; "
                                "bump the version in manifest.json (published versions are immutable)")
        blob = self.targets_dir / f"plugins/{publisher}/{digest}.{artifact_name(domain, custom['version'])}"
        _atomic_write(blob, artifact)
        md.signed.targets[path] = TargetFile(len(artifact), {"sha256": digest}, path, {"custom": custom})
        md.signed.version += 1
        md.signed.expires = expires or self._expires(publisher)
        self._signers({signer.keyid: signer}, role.keyids, role.threshold, publisher)
        self._write(md, publisher, [signer])
        self.write_snapshot_and_timestamp(keyring, changed={publisher: md.signed.version})
        return result, True

    def plugins(self) -> list[PublishedPlugin]:
        out = []
        for name in sorted(self.publishers()):
            md = self.targets(name)
            if md is None:
                continue
            for path, target in sorted(md.signed.targets.items()):
                custom = target.custom or {}
                if custom.get("kind") == "wasm-module":   # analytics modules (registry/modules.py), not plugins
                    continue
                out.append(PublishedPlugin(name, path, str(custom.get("domain", "?")), str(custom.get("version", "?")),
                                           tuple(custom.get("kinds", ())), target.length,
                                           target.hashes.get("sha256", "")))
        return out

    def describe(self) -> dict:
        root = self.root()
        ts = self.timestamp()
        return {
            "roles": {name: {"keyids": role.keyids, "threshold": role.threshold}
                      for name, role in root.signed.roles.items()},
            "root_version": root.signed.version,
            "root_threshold": root.signed.roles["root"].threshold,
            "timestamp_version": ts.signed.version,
            "timestamp_expires": ts.signed.expires.isoformat(),
            "publishers": {name: {"paths": role.paths, "keyids": role.keyids} for name, role in self.publishers().items()},
        }
