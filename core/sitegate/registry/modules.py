"""WebAssembly modules as signed registry targets, beside the plugins of the same publisher.

A module is one `.wasm` file signed by its publisher's delegated role at
`plugins/<publisher>/<name>-<version>.wasm` (inside the existing `plugins/<publisher>/*`
delegation, so no new roles or keys). Its `custom` field says `kind: wasm-module`, which
keeps it out of plugin listings (those match on `custom.domain`). `publish_module` is the
publisher's side; `ModuleStore.fetch` the site's: TUF-verified download into
<state>/plugins/modules/, re-hashed against trusted metadata at every load.
"""

from __future__ import annotations

import hashlib
import logging
import re
from datetime import datetime
from pathlib import Path

import attrs
from packaging.version import InvalidVersion, Version
from tuf.api.metadata import Metadata, TargetFile, Targets

from .errors import PluginRefused
from .keys import NaclSigner
from .repository import Repository, RegistryError, _atomic_write, _now
from .store import PluginStore

log = logging.getLogger(__name__)

MODULE_KIND = "wasm-module"
ABI_VERSION = 1
WASM_MAGIC = b"\0asm"
MAX_MODULE_BYTES = 16 * 1024 * 1024
_NAME = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,63}$")


class ModuleRefused(PluginRefused):
    """`wasm module 'acme/moving_average' 1.0.0: refused (artifact-hash): ...`"""

    def __init__(self, ref: str, check: str, detail: str):
        super().__init__(ref, check, detail)
        self.args = (f"wasm module {ref!r}: refused ({check}): {detail}",)

    def __str__(self) -> str:
        return self.args[0]


@attrs.frozen(slots=True)
class VerifiedModule:
    """Module bytes whose sha256 matched the publisher's signed target at load time."""

    publisher: str
    name: str
    version: str
    sha256: str
    data: bytes = attrs.field(repr=False)
    target: str = ""

    @property
    def ref(self) -> str:
        return f"{self.publisher}/{self.name}"


def parse_ref(ref: str) -> tuple[str, str]:
    """`acme/moving_average` -> ("acme", "moving_average"), or ValueError saying what is wrong."""
    publisher, sep, name = str(ref).partition("/")
    if not sep or not _NAME.match(publisher) or not _NAME.match(name):
        raise ValueError(f"module {ref!r}: expected <publisher>/<name> in lowercase letters, digits, '-' "
                         "or '_' (example: acme/moving_average)")
    return publisher, name


def _check_version(ref: str, version: str) -> str:
    try:
        Version(str(version))
    except InvalidVersion:
        raise ValueError(f"module {ref!r}: version {version!r} is not a version (pin an exact one, e.g. 1.0.0)") \
            from None
    return str(version)


def module_target_path(publisher: str, name: str, version: str) -> str:
    return f"plugins/{publisher}/{name}-{version}.wasm"


def publish_module(repo: Repository, wasm: bytes, name: str, version: str, signer: NaclSigner,
                   keyring: dict[str, NaclSigner], *, description: str = "", replace: bool = False,
                   expires: datetime | None = None) -> tuple[str, bool]:
    """Sign `wasm` as <publisher>/<name> `version` with the publisher key `signer`; returns (target path, changed).

    Published versions are immutable unless `replace` (development registries only).
    """
    if not wasm.startswith(WASM_MAGIC):
        raise RegistryError(f"module {name} {version}: not a WebAssembly binary (compile .wat first, e.g. with "
                            "`python -c \"import wasmtime,sys; sys.stdout.buffer.write(wasmtime.wat2wasm(open(sys.argv[1]).read()))\" m.wat`)")
    if len(wasm) > MAX_MODULE_BYTES:
        raise RegistryError(f"module {name} {version}: {len(wasm)} bytes, more than the {MAX_MODULE_BYTES} allowed")
    publishers = repo.publishers()
    owned = [p for p, role in publishers.items() if signer.keyid in role.keyids]
    if not owned:
        raise RegistryError(f"key {signer.keyid[:12]} is not the key of any publisher in {repo.path}")
    publisher = owned[0]
    try:
        parse_ref(f"{publisher}/{name}")
        _check_version(name, version)
    except ValueError as exc:
        raise RegistryError(str(exc)) from None
    path = module_target_path(publisher, name, version)
    digest = hashlib.sha256(wasm).hexdigest()
    custom = {"kind": MODULE_KIND, "module": name, "version": version, "publisher": publisher,
              "abi": ABI_VERSION, "description": description}
    md = repo.targets(publisher)
    if md is None:
        md = Metadata(Targets(expires=_now()))
        md.signed.version = 0
    existing = md.signed.targets.get(path)
    if existing is not None and existing.hashes.get("sha256") == digest and existing.custom == custom:
        return path, False
    if existing is not None and not replace:
        raise RegistryError(f"{path}: version {version} is already published with different bytes; "
                            "publish a new version (published versions are immutable)")
    _atomic_write(repo.targets_dir / f"plugins/{publisher}/{digest}.{name}-{version}.wasm", wasm)
    md.signed.targets[path] = TargetFile(len(wasm), {"sha256": digest}, path, {"custom": custom})
    md.signed.version += 1
    md.signed.expires = expires or repo._expires(publisher)
    role = publishers[publisher]
    repo._signers({signer.keyid: signer}, role.keyids, role.threshold, publisher)
    repo._write(md, publisher, [signer])
    repo.write_snapshot_and_timestamp(keyring, changed={publisher: md.signed.version})
    return path, True


class ModuleStore:
    """The site's verified WASM modules; shares the plugin store's trust state, lock and audit log."""

    def __init__(self, state_dir: Path, registry_dir: Path | None = None, *, actor: str | None = None):
        self.plugins = PluginStore(state_dir, registry_dir, actor=actor)
        self.cache_dir = self.plugins.base / "modules"

    def _cached(self, publisher: str, name: str, version: str) -> Path:
        return self.cache_dir / publisher / name / f"{version}.wasm"

    def fetch(self, ref: str, version: str) -> VerifiedModule:
        """The module `ref` at exactly `version`, verified against the registry's signed metadata.

        Raises ModuleRefused naming the check (not-found, signature, artifact-hash,
        installed-files, ...). Blocking: file and hash work.
        """
        try:
            publisher, name = parse_ref(ref)
            version = _check_version(ref, version)
        except ValueError as exc:
            raise ModuleRefused(str(ref), "not-found", str(exc)) from None
        path = module_target_path(publisher, name, version)
        store = self.plugins
        try:
            with store._locked():
                info = store.index.targetinfo(ref, path)
                custom = info.custom if isinstance(info.custom, dict) else {}
                if custom.get("kind") != MODULE_KIND or custom.get("module") != name \
                        or str(custom.get("version")) != version:
                    raise ModuleRefused(ref, "manifest", f"{path}: signed facts {custom!r} do not describe "
                                        f"module {name} {version}")
                if custom.get("abi") != ABI_VERSION:
                    raise ModuleRefused(ref, "core-api", f"{path}: built for ABI {custom.get('abi')!r}, this "
                                        f"core runs ABI {ABI_VERSION}")
                signed = info.hashes.get("sha256", "")
                cached = self._cached(publisher, name, version)
                if cached.is_file():
                    data = cached.read_bytes()
                    actual = hashlib.sha256(data).hexdigest()
                    if actual != signed:
                        raise ModuleRefused(ref, "installed-files", f"{cached} changed after it was verified "
                                            f"(sha256 {actual[:16]}…, signed {signed[:16]}…); delete it to fetch "
                                            "the signed module again")
                else:
                    data = store.index.download(ref, info)    # TUF: signed length and hashes
                    _atomic_write(cached, data)
                    store.audit.record("module", ref, "ok", version=version, publisher=publisher, sha256=signed)
        except PluginRefused as exc:
            if not isinstance(exc, ModuleRefused):
                exc = ModuleRefused(ref, exc.check, exc.detail)
            store.audit.record("module", ref, "refused", check=exc.check, detail=exc.detail, version=version)
            raise exc from None
        return VerifiedModule(publisher, name, version, signed, data, path)


@attrs.frozen(slots=True)
class PublishedModule:
    publisher: str
    path: str
    name: str
    version: str
    length: int
    sha256: str


def is_module_target(custom: object) -> bool:
    """True for a module's signed target (plugin listings and checks skip these)."""
    return isinstance(custom, dict) and custom.get("kind") == MODULE_KIND


def published_modules(repo: Repository) -> list[PublishedModule]:
    """Every signed module in the registry, for `sitegate registry list` and `verify`."""
    out = []
    for publisher in sorted(repo.publishers()):
        md = repo.targets(publisher)
        if md is None:
            continue
        for path, target in sorted(md.signed.targets.items()):
            custom = target.custom or {}
            if is_module_target(custom):
                out.append(PublishedModule(publisher, path, str(custom.get("module")), str(custom.get("version")),
                                           target.length, target.hashes.get("sha256", "")))
    return out


def verify_modules(registry: Path, out=None) -> list[str]:
    """Check every signed module as a brand-new site would (metadata walk, download, hash); the problems."""
    import sys
    import tempfile

    from .client import TrustedIndex

    out = out or sys.stdout
    problems = []
    modules = published_modules(Repository(registry))
    with tempfile.TemporaryDirectory(prefix="sitegate-verify-modules-") as state:
        index = TrustedIndex(registry, Path(state) / "trust")
        for i, m in enumerate(modules, 1):
            ref = f"{m.publisher}/{m.name}"
            try:
                info = index.targetinfo(ref, m.path)
                if not index.download(ref, info).startswith(WASM_MAGIC):
                    raise ModuleRefused(ref, "manifest", f"{m.path}: not a WebAssembly binary")
                print(f"[{i}/{len(modules)}] ok  module {ref} {m.version}", file=out)
            except PluginRefused as exc:
                problems.append(f"wasm module {ref!r} {m.version}: refused ({exc.check}): {exc.detail}")
                print(f"[{i}/{len(modules)}] BAD {problems[-1]}", file=out)
    return problems
