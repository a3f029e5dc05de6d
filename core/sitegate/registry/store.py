"""A site's installed plugins: verified install, activation, rollback and start-up checks.

Lives in <state>/plugins/: `trust/` (TUF client state, see client.py),
`installed/<domain>/<version>/<domain>/` (the package and its manifest.json,
what the loader imports), `installed/<domain>/active.json` (current and
previous version; replaced atomically, so rollback is one step) and
`audit.jsonl` (audit.py). source.py builds start-up on top of this.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import logging
import os
import shutil
import tempfile
import zipfile
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import attrs
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import Version

from ..errors import ConfigError
from ..manifest import Manifest
from ..structure import structure
from .artifact import artifact_manifest, file_hashes, safe_member_names
from .audit import AuditLog
from .client import Candidate, TrustedIndex
from .compat import check_core_api, check_requirements, core_api_version
from .errors import PluginRefused
from .repository import CUSTOM_FACTS

log = logging.getLogger(__name__)


@attrs.frozen(slots=True)
class InstalledPlugin:
    """A verified, installed plugin. `path` holds manifest.json and the package's __init__.py."""

    domain: str
    version: str
    path: Path
    manifest: dict
    publisher: str = ""
    target: str = ""
    verified: bool = True

    @property
    def import_root(self) -> Path:
        """The folder to put on a search path to `import <domain>` (path's parent)."""
        return self.path.parent


@attrs.frozen(slots=True)
class InstallRecord:
    version: str
    publisher: str
    target: str
    sha256: str
    installed_at: str


def _atomic_json(path: Path, data: object) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself must survive power loss
    finally:
        os.close(dir_fd)


def _hash_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            h.update(chunk)
    return h.hexdigest()


class PluginStore:
    """Installed plugins of one site. `registry_dir` may be None for offline verification of what is installed."""

    def __init__(self, state_dir: Path, registry_dir: Path | None = None, *, actor: str | None = None,
                 core_api: str | None = None, root: bytes | None = None):
        self.base = Path(state_dir) / "plugins"
        self.installed_dir = self.base / "installed"
        self.installed_dir.mkdir(parents=True, exist_ok=True)
        self.registry_dir = Path(registry_dir) if registry_dir is not None else None
        self.audit = AuditLog(self.base / "audit.jsonl", actor)
        self.core_api = core_api or core_api_version()
        self._root = root
        self._index: TrustedIndex | None = None

    # -- plumbing ------------------------------------------------------------------------------
    @property
    def index(self) -> TrustedIndex:
        if self._index is None:
            # Without a registry folder, verify against the trust folder's own copies:
            # ngclient re-checks them (signatures, versions, expiry) just the same.
            source = self.registry_dir
            if source is not None and not (source / "metadata").is_dir():
                if (self.base / "trust" / "metadata" / "root.json").is_file():
                    log.warning("registry %s not found: verifying against the cached trusted metadata", source)
                    source = None
            self._index = TrustedIndex(source, self.base / "trust", root=self._root)
        return self._index

    @contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self.base / ".lock", os.O_RDWR | os.O_CREAT, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _active_path(self, domain: str) -> Path:
        return self.installed_dir / domain / "active.json"

    def active(self, domain: str) -> tuple[InstallRecord | None, InstallRecord | None]:
        try:
            data = json.loads(self._active_path(domain).read_text())
        except FileNotFoundError:
            return None, None
        except (OSError, json.JSONDecodeError) as exc:
            raise PluginRefused(domain, "installed-files", f"{self._active_path(domain)} unreadable ({exc})") from None
        current = InstallRecord(**data["current"]) if data.get("current") else None
        previous = InstallRecord(**data["previous"]) if data.get("previous") else None
        return current, previous

    def _set_active(self, domain: str, current: InstallRecord, previous: InstallRecord | None) -> None:
        _atomic_json(self._active_path(domain), {
            "domain": domain,
            "current": attrs.asdict(current),
            "previous": attrs.asdict(previous) if previous else None,
        })
        keep = {current.version} | ({previous.version} if previous else set())
        for child in (self.installed_dir / domain).iterdir():
            if child.is_dir() and child.name not in keep:
                shutil.rmtree(child, ignore_errors=True)

    def pin_root(self, root: bytes, *, replace: bool = False) -> str:
        """Pin the registry's root metadata out of band (instead of trust on first use); returns a summary."""
        from tuf.api.metadata import Metadata, Root

        try:
            md = Metadata.from_bytes(root)
            if not isinstance(md.signed, Root):
                raise ValueError(f"is {md.signed.type} metadata, expected root")
            md.signed.verify_delegate(Root.type, md.signed_bytes, md.signatures)  # self-signed, threshold
        except Exception as exc:  # noqa: BLE001 - every kind of bad file gets the same answer
            raise PluginRefused("*", "signature", f"root metadata refused: {exc}") from None
        trust = self.base / "trust" / "metadata"
        pinned = trust / "root.json"
        if pinned.exists() and not replace:
            raise PluginRefused("*", "registry", f"{pinned} already pins a root (use --replace to start over, "
                                "which forgets rollback protection too)")
        if replace:
            shutil.rmtree(self.base / "trust", ignore_errors=True)
        trust.mkdir(parents=True, exist_ok=True)
        pinned.write_bytes(root)
        self.audit.record("trust", "*", "ok", detail=f"pinned root v{md.signed.version}")
        return f"root v{md.signed.version}, {len(md.signed.roles['root'].keyids)} keys, threshold " \
               f"{md.signed.roles['root'].threshold}"

    def package_dir(self, domain: str, version: str) -> Path:
        return self.installed_dir / domain / version / domain

    def installed_domains(self) -> list[str]:
        return sorted(p.name for p in self.installed_dir.iterdir() if (p / "active.json").is_file())

    def _refuse(self, action: str, exc: PluginRefused, **fields: object) -> PluginRefused:
        self.audit.record(action, exc.domain, "refused", check=exc.check, detail=exc.detail, **fields)
        return exc

    # -- choosing a version --------------------------------------------------------------------
    def choose(self, domain: str, spec: str = "") -> Candidate:
        """The highest signed version matching `spec` that supports this core."""
        try:
            specifier = SpecifierSet(_normalise_spec(spec))
        except InvalidSpecifier:
            raise PluginRefused(domain, "not-found", f"{spec!r} is not a version or range "
                                "(examples: 1.2.0, >=1.2,<2)") from None
        candidates = self.index.candidates(domain)
        if not candidates:
            raise PluginRefused(domain, "not-found", f"no signed plugin {domain!r} in the registry at {self.registry_dir}")
        current, _ = self.active(domain)
        publishers = sorted({c.publisher for c in candidates})
        if current is not None:
            # A domain stays with the publisher it was installed from: another publisher
            # signing a higher version of the same name must not take it over.
            candidates = [c for c in candidates if c.publisher == current.publisher]
            if not candidates:
                raise PluginRefused(domain, "not-found", f"installed from publisher {current.publisher!r}, which "
                                    f"no longer signs it (signed by: {', '.join(publishers)})")
        elif len(publishers) > 1:
            raise PluginRefused(domain, "delegation", f"signed by several publishers ({', '.join(publishers)}); "
                                "a domain must have one publisher per registry (ask the registry owner)")
        # Pre-releases only when asked for or when nothing else matches (packaging's rule).
        allowed = set(specifier.filter([c.version for c in candidates]))
        matching = [c for c in candidates if c.version in allowed]
        if not matching:
            listed = ", ".join(str(c.version) for c in candidates)
            raise PluginRefused(domain, "not-found", f"no signed version matches {spec!r} (signed: {listed})")
        for cand in matching:
            if _supports_core(cand, self.core_api):
                return cand
        # None fits this core: refuse with the newest matching version's range in the message.
        check_core_api(domain, str(matching[0].version), matching[0].custom.get("requires", ""), self.core_api)
        raise AssertionError("check_core_api accepted a version _supports_core refused")  # pragma: no cover

    # -- install -------------------------------------------------------------------------------
    def install(self, domain: str, spec: str = "", *, activate: bool = True, action: str | None = None) -> InstalledPlugin:
        """Verify and install the best signed version matching `spec`; the previous one is kept."""
        current, _ = self.active(domain)
        action = action or ("upgrade" if current else "install")
        try:
            with self._locked():
                cand = self.choose(domain, spec)
                return self._install_candidate(domain, cand, activate=activate, action=action)
        except PluginRefused as exc:
            raise self._refuse(action, exc, spec=spec or None,
                               from_version=current.version if current else None) from None

    def _install_candidate(self, domain: str, cand: Candidate, *, activate: bool, action: str) -> InstalledPlugin:
        info = self.index.targetinfo(domain, cand.path)
        custom = info.custom if isinstance(info.custom, dict) else {}
        version = str(custom.get("version"))
        check_core_api(domain, version, custom.get("requires", ""), self.core_api)
        check_requirements(domain, version, custom.get("requirements", []))
        data = self.index.download(domain, info)
        manifest = verify_artifact(domain, data, custom, cand.path)
        dest = self.installed_dir / domain / version
        _extract(domain, data, dest)
        record = InstallRecord(version, cand.publisher, cand.path, info.hashes["sha256"],
                               datetime.now(timezone.utc).isoformat(timespec="seconds"))
        current, previous = self.active(domain)
        if activate:
            if current is not None and current.version != version:
                previous = current  # re-installing the current version keeps the older fallback
            self._set_active(domain, record, previous)
            self.audit.record(action, domain, "ok", version=version, publisher=cand.publisher,
                              from_version=current.version if current and current.version != version else None,
                              sha256=record.sha256)
        else:
            self._staged_record(domain, record)
            self.audit.record("stage", domain, "ok", version=version, publisher=cand.publisher)
        return InstalledPlugin(domain, version, self.package_dir(domain, version), manifest, cand.publisher, cand.path)

    def _staged_record(self, domain: str, record: InstallRecord) -> None:
        _atomic_json(self.installed_dir / domain / f"staged-{record.version}.json", attrs.asdict(record))

    def activate(self, domain: str, version: str) -> InstalledPlugin:
        """Make an installed (staged or previous) `version` current; the old current becomes previous."""
        with self._locked():
            current, previous = self.active(domain)
            if current is not None and current.version == version:
                return self.verify_installed(domain)
            if previous is not None and previous.version == version:
                record = previous
            else:
                staged = self.installed_dir / domain / f"staged-{version}.json"
                try:
                    record = InstallRecord(**json.loads(staged.read_text()))
                except FileNotFoundError:
                    exc = PluginRefused(domain, "not-found", f"version {version} is not installed or staged")
                    raise self._refuse("activate", exc) from None
                staged.unlink()
            plugin = self._verify_record(domain, record, "activate")
            self._set_active(domain, record, current)
            self.audit.record("activate", domain, "ok", version=version,
                              from_version=current.version if current else None)
            return plugin

    def rollback(self, domain: str) -> InstalledPlugin:
        """Swap back to the previous version (verified first); the current one becomes previous."""
        with self._locked():
            current, previous = self.active(domain)
            if previous is None:
                exc = PluginRefused(domain, "not-found", "no previous version to roll back to"
                                    if current else "not installed")
                raise self._refuse("rollback", exc) from None
            plugin = self._verify_record(domain, previous, "rollback")
            self._set_active(domain, previous, current)
            self.audit.record("rollback", domain, "ok", version=previous.version, from_version=current.version)
            return plugin

    def upgrade(self, domain: str, spec: str = "") -> InstalledPlugin | None:
        """Install the highest signed version matching `spec` if newer than the current; None when up to date."""
        current, _ = self.active(domain)
        if current is None:
            return self.install(domain, spec)
        try:
            cand = self.choose(domain, spec)
        except PluginRefused as exc:
            raise self._refuse("upgrade", exc, from_version=current.version) from None
        if cand.version <= Version(current.version):
            return None
        return self.install(domain, f"=={cand.version}", action="upgrade")

    def ensure(self, domain: str, spec: str = "") -> InstalledPlugin:
        """Start-up: verify the installed version if it satisfies `spec`, else install the best match."""
        current, _ = self.active(domain)
        if current is not None:
            try:
                satisfied = SpecifierSet(_normalise_spec(spec)).contains(Version(current.version), prereleases=True)
            except InvalidSpecifier:
                satisfied = False  # install() reports the bad spec
            if satisfied:
                return self.verify_installed(domain)
        return self.install(domain, spec)

    # -- start-up verification -----------------------------------------------------------------
    def verify_installed(self, domain: str) -> InstalledPlugin:
        """Re-hash the current version's files against trusted signed metadata (call at every start)."""
        current, _ = self.active(domain)
        if current is None:
            exc = PluginRefused(domain, "not-found", "not installed (run `sitegate plugins install "
                                f"{domain}`)")
            raise self._refuse("verify", exc) from None
        return self._verify_record(domain, current, "verify")

    def _verify_record(self, domain: str, record: InstallRecord, action: str) -> InstalledPlugin:
        try:
            info = self.index.targetinfo(domain, record.target)
            custom = info.custom if isinstance(info.custom, dict) else {}
            if info.hashes.get("sha256") != record.sha256:
                # The registry now signs different bytes for this version (a republish): the
                # install is stale, not tampered. Fetch the signed bytes again, verified.
                cand = Candidate(record.publisher, record.target, Version(record.version), custom)
                current, _ = self.active(domain)
                activate = current is not None and current.version == record.version
                return self._install_candidate(domain, cand, activate=activate, action="reinstall")
            folder = self.package_dir(domain, record.version)
            _check_files(domain, record.version, folder, custom.get("files", {}))
            manifest = json.loads((folder / "manifest.json").read_text())
            check_core_api(domain, record.version, custom.get("requires", ""), self.core_api)
            check_requirements(domain, record.version, custom.get("requirements", []))
        except PluginRefused as exc:
            raise self._refuse(action, exc, version=record.version) from None
        return InstalledPlugin(domain, record.version, folder, manifest, record.publisher, record.target)

    def load_unverified(self, domain: str) -> InstalledPlugin:
        """TEST-ONLY: the current install without any check (the benchmark's baseline)."""
        current, _ = self.active(domain)
        if current is None:
            raise PluginRefused(domain, "not-found", "not installed")
        folder = self.package_dir(domain, current.version)
        manifest = json.loads((folder / "manifest.json").read_text())
        return InstalledPlugin(domain, current.version, folder, manifest, current.publisher, current.target,
                               verified=False)


def _supports_core(cand: Candidate, core_api: str) -> bool:
    try:
        check_core_api(cand.custom.get("domain", "?"), str(cand.version), cand.custom.get("requires", ""), core_api)
    except PluginRefused:
        return False
    return True


def _normalise_spec(spec: str) -> str:
    spec = str(spec or "").strip()  # a YAML pin such as 1.0 may arrive as a number
    if spec and spec[0].isdigit():
        return f"=={spec}"  # a bare version pins it, as in the site file's `mqttsn: "1.0.4"`
    return spec


def verify_artifact(domain: str, data: bytes, custom: dict, where: str) -> dict:
    """The artifact (already hash-checked by TUF) must agree with the signed facts, file by file."""
    try:
        raw = artifact_manifest(data, where)
        hashes = file_hashes(data, domain, where)
    except (ValueError, zipfile.BadZipFile) as exc:
        raise PluginRefused(domain, "manifest", str(exc)) from None
    try:
        manifest = structure(dict(raw), Manifest, file=f"{where}:manifest.json")
    except ConfigError as exc:
        raise PluginRefused(domain, "manifest", str(exc)) from None
    for fact in CUSTOM_FACTS:
        if getattr(manifest, fact) != custom.get(fact):
            raise PluginRefused(domain, "manifest", f"{where}: manifest {fact}={getattr(manifest, fact)!r} "
                                f"differs from the signed {fact}={custom.get(fact)!r}")
    if hashes != custom.get("files"):
        raise PluginRefused(domain, "manifest", f"{where}: file list or file hashes differ from the signed ones")
    return raw


def _extract(domain: str, data: bytes, dest: Path) -> None:
    """Unpack into a staging folder, then rename into place: a crash leaves no half-installed version."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".staging-{dest.name}-", dir=dest.parent))
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            for name in safe_member_names(zf, domain, str(dest)):
                target = staging / name
                target.parent.mkdir(parents=True, exist_ok=True)
                with open(target, "wb") as f:
                    f.write(zf.read(name))
                    f.flush()
                    os.fsync(f.fileno())
        if dest.exists():
            trash = Path(tempfile.mkdtemp(prefix=f".old-{dest.name}-", dir=dest.parent))
            os.rename(dest, trash / "old")
            os.rename(staging, dest)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.rename(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _check_files(domain: str, version: str, folder: Path, signed: dict[str, str]) -> None:
    if not folder.is_dir():
        raise PluginRefused(domain, "installed-files", f"{domain} {version}: {folder} is missing")
    seen = set()
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if "__pycache__" in path.parts[len(folder.parts):]:
            continue
        if path.is_dir() and not path.is_symlink():
            continue
        if path.is_symlink() or rel not in signed:
            raise PluginRefused(domain, "installed-files", f"{domain} {version}: {rel} is not part of the "
                                "signed artifact (added after install)")
        actual = _hash_file(path)
        if actual != signed[rel]:
            raise PluginRefused(domain, "installed-files", f"{domain} {version}: {rel} changed after install "
                                f"(sha256 {actual[:16]}…, signed {signed[rel][:16]}…)")
        seen.add(rel)
    missing = sorted(set(signed) - seen)
    if missing:
        raise PluginRefused(domain, "installed-files", f"{domain} {version}: {', '.join(missing)} missing "
                            "since install")
    # Bytecode is not covered by the signature; drop it so only verified source is ever run.
    for cache in folder.rglob("__pycache__"):
        shutil.rmtree(cache, ignore_errors=True)
