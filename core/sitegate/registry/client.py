"""The site's side of TUF: python-tuf's ngclient reading a local registry folder.

`TrustedIndex` refreshes metadata from the registry folder through
`LocalFetcher` into the site's trust folder (where the pinned root and the
last trusted versions live, which is what makes rollback and freeze attacks
visible), lists the signed versions of a plugin and downloads verified
artifacts. Every tuf failure becomes a `PluginRefused` naming the check.
"""

from __future__ import annotations

import json

import shutil
from pathlib import Path
from typing import Iterator
from urllib.parse import unquote

import attrs
from packaging.version import InvalidVersion, Version
from tuf.api import exceptions as tuf_errors
from tuf.api.metadata import Metadata, TargetFile, Targets
from tuf.ngclient import FetcherInterface, Updater, UpdaterConfig

from .errors import PluginRefused

_SCHEME = "sitegate-registry:///"
_CHUNK = 64 * 1024
# Bounds on what a client will read (endless-data attack). Plugin metadata is small.
CLIENT_CONFIG = dict(root_max_length=256_000, timestamp_max_length=16_384,
                     snapshot_max_length=1_000_000, targets_max_length=2_000_000)


class LocalFetcher(FetcherInterface):
    """Serves `sitegate-registry:///<path>` from a folder; a missing file is a 404, as over HTTP."""

    def __init__(self, registry_dir: Path):
        self.root = Path(registry_dir).resolve()

    def _fetch(self, url: str) -> Iterator[bytes]:
        if not url.startswith(_SCHEME):
            raise tuf_errors.DownloadError(f"not a registry URL: {url}")
        path = (self.root / unquote(url[len(_SCHEME):])).resolve()
        if self.root not in path.parents:
            raise tuf_errors.DownloadError(f"{url}: outside the registry folder")
        try:
            f = open(path, "rb")
        except FileNotFoundError:
            raise tuf_errors.DownloadHTTPError(f"{path}: not found", 404) from None

        def chunks() -> Iterator[bytes]:
            with f:
                while chunk := f.read(_CHUNK):
                    yield chunk

        return chunks()


class CachedFetcher(FetcherInterface):
    """Serves the trust folder's own verified copies when the registry folder is absent.

    ngclient still checks every signature, version and expiry date, so a site can
    start offline but not past its metadata's expiry (the freeze-attack bound).
    Artifacts are not cached: installing needs the registry.
    """

    def __init__(self, metadata_dir: Path):
        self.metadata_dir = Path(metadata_dir)

    def _fetch(self, url: str) -> Iterator[bytes]:
        name = unquote(url[len(_SCHEME):]) if url.startswith(_SCHEME) else url
        if name.startswith("metadata/"):
            filename = name.removeprefix("metadata/")
            head, _, rest = filename.partition(".")
            if head.isdigit() and not rest.startswith("root."):
                filename = rest  # N.role.json -> role.json; the updater checks the version inside
            path = self.metadata_dir / filename
            if "/" not in filename and path.is_file():
                return iter([path.read_bytes()])
        raise tuf_errors.DownloadHTTPError(f"{name}: not in the offline cache", 404)


@attrs.frozen(slots=True)
class Candidate:
    """One signed version of a plugin, as listed by a publisher's role (not yet walked through TUF)."""

    publisher: str
    path: str
    version: Version
    custom: dict


def classify(exc: BaseException, stage: str) -> tuple[str, str]:
    """(check, detail) for a tuf exception raised while doing `stage`."""
    msg = str(exc) or type(exc).__name__
    if stage != "download":
        msg = f"{stage}: {msg}"
    if isinstance(exc, tuf_errors.ExpiredMetadataError):
        return "expired", f"{msg} (freeze attack or a registry nobody re-signed: run `sitegate registry refresh`)"
    if isinstance(exc, tuf_errors.BadVersionNumberError):
        rollback = "must be >=" in msg or "Expected root version" in msg or (
            "version" in msg and "Expected" in msg and ".json version" in msg)
        if rollback:
            return "rollback", f"{msg}: the registry offers metadata older than this site already trusts"
        return "mix-and-match", f"{msg}: metadata versions do not belong to the same signed snapshot"
    if isinstance(exc, tuf_errors.UnsignedMetadataError):
        return "signature", f"{msg} (signed by an unknown or revoked key, or edited after signing)"
    if isinstance(exc, tuf_errors.DownloadLengthMismatchError):
        return "size", f"{msg} (endless-data attack or a corrupt registry)"
    if isinstance(exc, tuf_errors.LengthOrHashMismatchError):
        return ("artifact-hash" if stage == "download" else "signature"), f"{msg}: bytes differ from signed metadata"
    if isinstance(exc, tuf_errors.DownloadHTTPError):
        return "registry", f"{msg} (an incomplete registry folder?)"
    if isinstance(exc, tuf_errors.RepositoryError):
        return "registry", f"{msg} (metadata unreadable or inconsistent)"
    if isinstance(exc, tuf_errors.DownloadError):
        cause = exc.__cause__
        return "registry", msg + (f": {cause}" if cause else "")
    return "registry", f"{type(exc).__name__}: {msg}"


_TUF_ERRORS = (tuf_errors.RepositoryError, tuf_errors.DownloadError, OSError, ValueError)


class TrustedIndex:
    """Trusted view of one registry, persisted under `trust_dir` between runs."""

    def __init__(self, registry_dir: Path | None, trust_dir: Path, *, root: bytes | None = None):
        self.offline = registry_dir is None
        self.registry_dir = Path(registry_dir) if registry_dir is not None else Path(trust_dir)
        self.trust_dir = Path(trust_dir)
        self.metadata_dir = self.trust_dir / "metadata"
        self.download_dir = self.trust_dir / "downloads"
        self.metadata_dir.mkdir(parents=True, exist_ok=True)
        self.download_dir.mkdir(parents=True, exist_ok=True)
        self.pinned_now = False
        pinned = self.metadata_dir / "root.json"
        if root is not None and not pinned.exists():
            pinned.write_bytes(root)
            self.pinned_now = True
        if not pinned.exists() and self.offline:
            raise PluginRefused("*", "registry", f"no registry folder and nothing trusted yet in {self.trust_dir}")
        if not pinned.exists():
            # Trust on first use: the first root seen is pinned in the state folder and every
            # later root must be signed by it (docs/security.md says how to pin out of band).
            first = self.registry_dir / "metadata" / "1.root.json"
            try:
                pinned.write_bytes(first.read_bytes())
            except FileNotFoundError:
                raise PluginRefused("*", "registry", f"{first}: no root metadata; is {self.registry_dir} a "
                                    "sitegate registry? (`python -m sitegate.registry.devpublish` makes one)") from None
            self.pinned_now = True
        self._updater: Updater | None = None
        self._refreshed = False

    def _new_updater(self) -> Updater:
        return Updater(str(self.metadata_dir), _SCHEME + "metadata/", str(self.download_dir), _SCHEME + "targets/",
                       CachedFetcher(self.metadata_dir) if self.offline else LocalFetcher(self.registry_dir),
                       UpdaterConfig(**CLIENT_CONFIG), bootstrap=None)

    def refresh(self, domain: str = "*") -> None:
        """Top-level refresh (root, timestamp, snapshot, targets); once per index."""
        if self._refreshed:
            return
        try:
            self._updater = self._new_updater()
            self._updater.refresh()
        except _TUF_ERRORS as exc:
            self._updater = None
            check, detail = classify(exc, "refreshing top-level metadata")
            if check == "signature" and not self.offline and not self._pins_this_registry():
                detail += (f"; {self.trust_dir} trusts another registry (the root it pinned at first use is not one of "
                           f"{self.registry_dir}'s): give this site a state folder of its own (--state DIR), or, if this "
                           f"registry replaced that one, pin it: `sitegate plugins trust "
                           f"{self.registry_dir / 'metadata' / '1.root.json'} --registry {self.registry_dir} "
                           f"--state {self.trust_dir.parent.parent} --replace`")
            raise PluginRefused(domain, check, detail) from exc
        self._refreshed = True

    def _pins_this_registry(self) -> bool:
        """Whether the pinned root is one of this registry's root versions (True when it cannot tell)."""
        pinned = self.metadata_dir / "root.json"
        try:
            version = json.loads(pinned.read_bytes())["signed"]["version"]
            return (self.registry_dir / "metadata" / f"{version}.root.json").read_bytes() == pinned.read_bytes()
        except FileNotFoundError:
            return False
        except (OSError, ValueError, KeyError, TypeError):
            return True

    @property
    def updater(self) -> Updater:
        if self._updater is None:
            raise RuntimeError("TrustedIndex.refresh() first")
        return self._updater

    def _trusted(self, role: str) -> Metadata[Targets] | None:
        # ngclient persists each role it verified under metadata_dir; reading them back
        # keeps to its public behaviour instead of reaching into its private trusted set.
        path = self.metadata_dir / f"{role}.json"
        try:
            return Metadata.from_bytes(path.read_bytes())
        except FileNotFoundError:
            return None

    def publishers(self) -> dict:
        top = self._trusted("targets")
        if top is None or top.signed.delegations is None:
            return {}
        return dict(top.signed.delegations.roles or {})

    def candidates(self, domain: str) -> list[Candidate]:
        """Every signed version of `domain` across publishers, highest first.

        Loading each publisher role goes through ngclient (signatures, versions,
        expiry). A listing outside the publisher's delegated path is refused here,
        naming the publisher, because ngclient would silently ignore it.
        """
        self.refresh(domain)
        snapshot = self._trusted("snapshot")
        listed = set(snapshot.signed.meta) if snapshot else set()
        found: list[Candidate] = []
        for name, role in self.publishers().items():
            if f"{name}.json" not in listed:
                continue  # publisher added but has not published yet
            probe = role.paths[0].replace("*", ".index") if role.paths else f"plugins/{name}/.index"
            try:
                self.updater.get_targetinfo(probe)  # loads and verifies the publisher's role
            except _TUF_ERRORS as exc:
                check, detail = classify(exc, f"loading publisher {name!r} metadata")
                raise PluginRefused(domain, check, detail) from exc
            md = self._trusted(name)
            if md is None:
                continue
            for path, target in md.signed.targets.items():
                custom = target.custom if isinstance(target.custom, dict) else {}
                if custom.get("domain") != domain:
                    continue
                if not role.is_delegated_path(path):
                    raise PluginRefused(domain, "delegation",
                                        f"publisher {name!r} signed {path}, outside its delegated paths "
                                        f"{', '.join(role.paths or [])}")
                try:
                    version = Version(str(custom.get("version")))
                except InvalidVersion:
                    raise PluginRefused(domain, "manifest", f"{path}: signed version {custom.get('version')!r} "
                                        "is not a version") from None
                found.append(Candidate(name, path, version, custom))
        found.sort(key=lambda c: c.version, reverse=True)
        return found

    def targetinfo(self, domain: str, path: str) -> TargetFile:
        """The TargetFile for `path`, found by the full TUF delegation walk."""
        self.refresh(domain)
        try:
            info = self.updater.get_targetinfo(path)
        except _TUF_ERRORS as exc:
            check, detail = classify(exc, f"looking up {path}")
            raise PluginRefused(domain, check, detail) from exc
        if info is None:
            raise PluginRefused(domain, "not-found", f"{path} is not signed by any trusted publisher "
                                "(removed, publisher revoked, or never published)")
        return info

    def download(self, domain: str, info: TargetFile) -> bytes:
        """The artifact bytes, checked against the signed length and hashes."""
        dest = self.download_dir / f"{info.hashes.get('sha256', 'x')}.zip"
        try:
            self.updater.download_target(info, str(dest))
            return dest.read_bytes()
        except _TUF_ERRORS as exc:
            check, detail = classify(exc, "download")
            raise PluginRefused(domain, check, f"artifact {info.path}: {detail}") from exc
        finally:
            dest.unlink(missing_ok=True)

    def forget(self) -> None:
        """Drop the trust state (the pinned root too). Only for `sitegate plugins trust --reset`."""
        shutil.rmtree(self.trust_dir, ignore_errors=True)
