"""Ed25519 keys for the registry: generation, key files and a TUF signer.

PyNaCl does the cryptography; `NaclSigner` adapts it to securesystemslib's
`Signer` so python-tuf's Metadata API (repository.py) can sign with it, and
the public half is a plain `SSlibKey` that tuf verifies with on the client.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import nacl.signing
from securesystemslib.signer import SIGNER_FOR_URI_SCHEME, Key, Signature, Signer, SSlibKey

# Put into every development key file and checked by `is_development_key`.
DEVELOPMENT_WARNING = (
    "DEVELOPMENT KEY - published in the sitegate repository, trusted by nobody. "
    "Never use it for a registry a real site installs from."
)
URI_SCHEME = "nacl-file"


def public_key_of(verify_key: nacl.signing.VerifyKey) -> SSlibKey:
    """The TUF key for an Ed25519 public key (keyid computed the standard way)."""
    from securesystemslib.signer._utils import compute_default_keyid  # stable helper, not re-exported

    keyval = {"public": verify_key.encode().hex()}
    keyid = compute_default_keyid("ed25519", "ed25519", keyval)
    return SSlibKey(keyid, "ed25519", "ed25519", keyval)


class NaclSigner(Signer):
    """Signs TUF metadata with an Ed25519 private key held by PyNaCl."""

    def __init__(self, signing_key: nacl.signing.SigningKey, name: str = "") -> None:
        self._signing_key = signing_key
        self._public = public_key_of(signing_key.verify_key)
        self.name = name

    @property
    def public_key(self) -> Key:
        return self._public

    @property
    def keyid(self) -> str:
        return self._public.keyid

    def sign(self, payload: bytes) -> Signature:
        signature = self._signing_key.sign(payload).signature
        return Signature(self._public.keyid, signature.hex())

    @classmethod
    def from_priv_key_uri(cls, priv_key_uri, public_key, secrets_handler=None):  # noqa: ANN001, ANN206
        scheme, _, path = priv_key_uri.partition(":")
        if scheme != URI_SCHEME:
            raise ValueError(f"NaclSigner: expected a '{URI_SCHEME}:PATH' key URI, got {priv_key_uri!r}")
        signer = load_private_key(Path(path))
        if signer.keyid != public_key.keyid:
            raise ValueError(f"{path}: private key does not match public key {public_key.keyid[:12]}")
        return signer

    @classmethod
    def generate(cls, name: str = "") -> NaclSigner:
        return cls(nacl.signing.SigningKey.generate(), name)


SIGNER_FOR_URI_SCHEME[URI_SCHEME] = NaclSigner


def write_key_pair(signer: NaclSigner, private_path: Path, *, development: bool = False) -> Path:
    """Write `name.key` (private, mode 0600) and `name.pub` next to it; return the .pub path."""
    private_path = Path(private_path)
    private_path.parent.mkdir(parents=True, exist_ok=True)
    public = {
        "name": signer.name,
        "keytype": "ed25519",
        "scheme": "ed25519",
        "keyid": signer.keyid,
        "public": signer.public_key.keyval["public"],
    }
    if development:
        public = {"WARNING": DEVELOPMENT_WARNING, **public}
    private = {**public, "private": signer._signing_key.encode().hex()}
    # Create with 0600 from the start: a private key must never be world-readable, even briefly.
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(private, f, indent=2)
        f.write("\n")
    public_path = private_path.with_suffix(".pub")
    public_path.write_text(json.dumps(public, indent=2) + "\n")
    return public_path


def _read_key_file(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ValueError(f"{path}: key file not found") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a sitegate key file ({exc})") from None
    if not isinstance(data, dict) or data.get("keytype") != "ed25519" or not isinstance(data.get("public"), str):
        raise ValueError(f"{path}: not a sitegate Ed25519 key file (expected keytype 'ed25519' and 'public')")
    return data


def load_private_key(path: Path) -> NaclSigner:
    data = _read_key_file(path)
    if not isinstance(data.get("private"), str):
        raise ValueError(f"{path}: holds no private key (is it the .pub file?)")
    try:
        signing_key = nacl.signing.SigningKey(bytes.fromhex(data["private"]))
    except Exception as exc:  # noqa: BLE001 - any decoding problem is a bad file
        raise ValueError(f"{path}: private key is not 32 hex-encoded bytes ({exc})") from None
    signer = NaclSigner(signing_key, data.get("name", Path(path).stem))
    if signer.public_key.keyval["public"] != data["public"]:
        raise ValueError(f"{path}: private and public halves do not match")
    return signer


def load_public_key(path: Path) -> SSlibKey:
    data = _read_key_file(path)
    try:
        verify_key = nacl.signing.VerifyKey(bytes.fromhex(data["public"]))
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"{path}: public key is not 32 hex-encoded bytes ({exc})") from None
    return public_key_of(verify_key)


def is_development_key(path: Path) -> bool:
    return _read_key_file(path).get("WARNING") == DEVELOPMENT_WARNING


def load_keyring(directory: Path) -> dict[str, NaclSigner]:
    """Every private key in a folder, by keyid: the registry picks a role's signers by keyid."""
    ring: dict[str, NaclSigner] = {}
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"{directory}: key folder not found")
    for path in sorted(directory.glob("*.key")):
        signer = load_private_key(path)
        ring[signer.keyid] = signer
    return ring


def default_keys_dir(registry: Path, *, development: bool | None = None) -> Path:
    """Where the owner's keys are by default: REGISTRY/keys for development registries, else REGISTRY-keys.

    Real keys never default to inside the registry folder, which gets copied to gateways.
    """
    registry = Path(registry)
    inside = registry / "keys"
    beside = registry.parent / f"{registry.name}-keys"
    if development is None:
        return inside if inside.is_dir() else beside
    return inside if development else beside
