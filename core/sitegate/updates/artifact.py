"""The update artifact: a payload plus a signed manifest of what a device needs to judge it.

After Uptane's targets metadata and Mender's artifact header: hardware ids it fits, a
monotonic release counter, version, minimum current version, length, hashes, expiry.
The manifest is canonical JSON signed with a publisher's Ed25519 key (PyNaCl); the
gateway checks it here and the device checks it again on its own.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any, Mapping

import attrs
import nacl.exceptions
import nacl.signing

from .errors import UpdateRefused

ENVELOPE_TYPE = "sitegate-update"
SPEC_VERSION = 1
KINDS = ("firmware", "config")


def parse_version(text: str, where: str = "version") -> tuple[int, ...]:
    """Dotted integers ("1.4.2"): what a sensor node can compare without a library."""
    try:
        parts = tuple(int(p) for p in str(text).split("."))
    except ValueError:
        raise UpdateRefused("format", f"{where}: expected dotted integers such as 1.4.2, got {text!r}") from None
    if not parts or any(p < 0 for p in parts):
        raise UpdateRefused("format", f"{where}: expected dotted integers such as 1.4.2, got {text!r}")
    return parts


@attrs.frozen(slots=True)
class UpdateManifest:
    """The signed facts about one update payload."""

    name: str                       # what is updated, e.g. "th-node-fw" (one line of releases)
    kind: str                       # firmware | config
    version: str                    # dotted integers
    release_counter: int            # strictly increases per name; devices refuse anything not above theirs
    hardware_ids: tuple[str, ...]   # the boards it fits
    length: int
    hashes: Mapping[str, str]       # sha256 and sha512, hex
    expires: int                    # unix seconds; after it nobody installs this
    min_current_version: str | None = None   # a delta needs at least this version on the device

    def to_dict(self) -> dict[str, Any]:
        data = {"_type": ENVELOPE_TYPE, "spec_version": SPEC_VERSION, "name": self.name, "kind": self.kind,
                "version": self.version, "release_counter": self.release_counter,
                "hardware_ids": list(self.hardware_ids), "length": self.length, "hashes": dict(self.hashes),
                "expires": self.expires}
        if self.min_current_version is not None:
            data["min_current_version"] = self.min_current_version
        return data

    @classmethod
    def from_dict(cls, data: Any, where: str = "manifest") -> UpdateManifest:
        if not isinstance(data, dict) or data.get("_type") != ENVELOPE_TYPE:
            raise UpdateRefused("format", f"{where}: not a sitegate update manifest (_type != {ENVELOPE_TYPE!r})")
        if data.get("spec_version") != SPEC_VERSION:
            raise UpdateRefused("format", f"{where}.spec_version: expected {SPEC_VERSION}, got {data.get('spec_version')!r}")
        try:
            m = cls(name=str(data["name"]), kind=str(data["kind"]), version=str(data["version"]),
                    release_counter=int(data["release_counter"]), hardware_ids=tuple(map(str, data["hardware_ids"])),
                    length=int(data["length"]), hashes=dict(data["hashes"]), expires=int(data["expires"]),
                    min_current_version=data.get("min_current_version"))
        except KeyError as exc:
            raise UpdateRefused("format", f"{where}: missing field {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:
            raise UpdateRefused("format", f"{where}: bad field value ({exc})") from None
        if m.kind not in KINDS:
            raise UpdateRefused("format", f"{where}.kind: expected one of {', '.join(KINDS)}, got {m.kind!r}")
        if "sha256" not in m.hashes:
            raise UpdateRefused("format", f"{where}.hashes: sha256 is required")
        parse_version(m.version, f"{where}.version")
        if m.min_current_version is not None:
            parse_version(m.min_current_version, f"{where}.min_current_version")
        return m


def canonical(data: Any) -> bytes:
    """The bytes that are signed: sorted keys, no spaces, UTF-8 (the device does the same)."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def keyid_of(verify_key: nacl.signing.VerifyKey) -> str:
    """The TUF key id of an Ed25519 key, so a device's trusted key matches the registry's publisher key."""
    from ..registry.keys import public_key_of
    return public_key_of(verify_key).keyid


@attrs.frozen(slots=True)
class UpdateArtifact:
    """A signed envelope and its payload, as handed to an update handler's ``stage``."""

    envelope: Mapping[str, Any]     # {"signed": manifest dict, "signatures": [{"keyid", "sig"}]}
    payload: bytes

    @property
    def manifest(self) -> UpdateManifest:
        return UpdateManifest.from_dict(self.envelope.get("signed"), "envelope.signed")

    @property
    def envelope_bytes(self) -> bytes:
        return canonical(self.envelope)

    @property
    def ref(self) -> str:
        m = self.manifest
        return f"{m.name}-{m.version}"

    def save(self, folder: Path) -> Path:
        """Write <name>-<version>.update.json and .bin; returns the .json path."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{self.ref}.update.json"
        path.with_suffix("").with_suffix(".bin").write_bytes(self.payload)
        path.write_text(json.dumps(dict(self.envelope), indent=2, sort_keys=True) + "\n")
        return path

    @classmethod
    def load(cls, path: Path) -> UpdateArtifact:
        path = Path(path)
        try:
            envelope = json.loads(path.read_text())
        except FileNotFoundError:
            raise UpdateRefused("format", f"{path}: not found") from None
        except json.JSONDecodeError as exc:
            raise UpdateRefused("format", f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
        payload_path = path.with_suffix("").with_suffix(".bin")
        try:
            payload = payload_path.read_bytes()
        except FileNotFoundError:
            raise UpdateRefused("format", f"{payload_path}: payload not found next to {path.name}") from None
        return cls(envelope, payload)


def hashes_of(payload: bytes) -> dict[str, str]:
    return {"sha256": hashlib.sha256(payload).hexdigest(), "sha512": hashlib.sha512(payload).hexdigest()}


def sign_update(payload: bytes, signing_key: Any, *, name: str, version: str,
                release_counter: int, hardware_ids: list[str] | tuple[str, ...], kind: str = "firmware",
                expires: int | None = None, valid_days: float = 30, min_current_version: str | None = None
                ) -> UpdateArtifact:
    """Build and sign the manifest for `payload` with the publisher's key: a PyNaCl SigningKey, or the
    signer `sitegate.registry.keys.load_private_key("acme.key")` returns (the key that publishes it)."""
    from ..registry.keys import NaclSigner
    if isinstance(signing_key, NaclSigner):
        signing_key = signing_key._signing_key
    manifest = UpdateManifest(name, kind, version, int(release_counter), tuple(hardware_ids), len(payload),
                              hashes_of(payload), int(expires if expires is not None else time.time() + valid_days * 86400),
                              min_current_version)
    signed = manifest.to_dict()
    UpdateManifest.from_dict(signed)  # refuse to sign what a device would refuse to parse
    sig = signing_key.sign(canonical(signed)).signature.hex()
    return UpdateArtifact({"signed": signed, "signatures": [{"keyid": keyid_of(signing_key.verify_key), "sig": sig}]},
                          payload)


def verify_envelope(envelope: Any, trusted: Mapping[str, nacl.signing.VerifyKey], *, now: float | None = None
                    ) -> UpdateManifest:
    """Check the signature (one trusted key suffices) and expiry; return the manifest."""
    if not isinstance(envelope, dict) or not isinstance(envelope.get("signatures"), list):
        raise UpdateRefused("format", "envelope: expected {'signed': ..., 'signatures': [...]}")
    manifest = UpdateManifest.from_dict(envelope.get("signed"), "envelope.signed")
    message = canonical(envelope["signed"])
    good = False
    for sig in envelope["signatures"]:
        key = trusted.get(sig.get("keyid")) if isinstance(sig, dict) else None
        if key is None:
            continue
        try:
            key.verify(message, bytes.fromhex(str(sig.get("sig", ""))))
            good = True
            break
        except (nacl.exceptions.BadSignatureError, ValueError):
            continue
    if not good:
        raise UpdateRefused("signature", f"{manifest.name} {manifest.version}: no valid signature by a trusted key")
    now = time.time() if now is None else now
    if manifest.expires <= now:
        raise UpdateRefused("expired", f"{manifest.name} {manifest.version}: expired at {manifest.expires} (now {int(now)})")
    return manifest


def verify_update(artifact: UpdateArtifact, trusted: Mapping[str, nacl.signing.VerifyKey], *,
                  hardware_id: str | None = None, current_counter: int | None = None,
                  current_version: str | None = None, now: float | None = None) -> UpdateManifest:
    """Every check a device makes, made on the gateway before a byte is sent.

    Raises UpdateRefused naming the check: signature, expired, length, hash,
    hardware, counter or min-version.
    """
    m = verify_envelope(artifact.envelope, trusted, now=now)
    if len(artifact.payload) != m.length:
        raise UpdateRefused("length", f"{m.name} {m.version}: payload is {len(artifact.payload)} bytes, signed {m.length}")
    actual = hashes_of(artifact.payload)
    for algo, expected in m.hashes.items():
        if algo in actual and actual[algo] != expected:
            raise UpdateRefused("hash", f"{m.name} {m.version}: {algo} of payload does not match the signed one")
    check_fits(m, hardware_id=hardware_id, current_counter=current_counter, current_version=current_version)
    return m


def check_fits(m: UpdateManifest, *, hardware_id: str | None, current_counter: int | None,
               current_version: str | None) -> None:
    """The per-device checks: right board, newer release, delta base present."""
    if hardware_id is not None and hardware_id not in m.hardware_ids:
        raise UpdateRefused("hardware", f"{m.name} {m.version} is for {', '.join(m.hardware_ids)}, not {hardware_id}")
    if current_counter is not None and m.release_counter <= current_counter:
        raise UpdateRefused("counter", f"{m.name} {m.version}: release counter {m.release_counter} is not above "
                            f"the device's {current_counter}")
    if (current_version is not None and m.min_current_version is not None
            and parse_version(current_version) < parse_version(m.min_current_version)):
        raise UpdateRefused("min-version", f"{m.name} {m.version} needs at least {m.min_current_version} "
                            f"on the device, which runs {current_version}")
