"""Plugin artifacts: reproducible zips built from a plugin's source folder.

`build_artifact` turns plugins/<domain>/ into one zip (the package and its
manifest.json, without tests/ or caches) whose bytes depend only on the files'
contents; publishing (repository.py) signs its hash, installing (store.py)
extracts it after verification. `file_hashes` is what gets re-checked at
every start.
"""

from __future__ import annotations

import hashlib
import io
import json
import stat
import zipfile
from pathlib import Path, PurePosixPath

from ..errors import ConfigError
from ..manifest import Manifest
from ..structure import structure

# Fixed metadata so the same source gives the same bytes on any machine, any day.
_FIXED_DATE = (1980, 1, 1, 0, 0, 0)
_FILE_MODE = 0o644
_COMPRESSION = zipfile.ZIP_DEFLATED
_COMPRESS_LEVEL = 9
# Never shipped: a plugin's own tests, caches and editor/VCS debris.
_EXCLUDED_DIRS = {"tests", "__pycache__", ".git", ".pytest_cache", ".mypy_cache", "node_modules"}
_EXCLUDED_SUFFIXES = (".pyc", ".pyo", ".swp", "~")
MAX_ARTIFACT_FILES = 2000
MAX_ARTIFACT_BYTES = 64 * 1024 * 1024


def artifact_name(domain: str, version: str) -> str:
    return f"{domain}-{version}.zip"


def _source_files(folder: Path) -> list[Path]:
    files = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if any(part in _EXCLUDED_DIRS or part.startswith(".") for part in rel.parts):
            continue
        if path.is_symlink():
            raise ConfigError(f"{path}: symlinks cannot go into a plugin artifact")
        if path.is_file() and not path.name.endswith(_EXCLUDED_SUFFIXES):
            files.append(path)
    return files


def read_source_manifest(folder: Path) -> Manifest:
    path = Path(folder) / "manifest.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: not found; a plugin folder needs a manifest.json") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from None
    return structure(data, Manifest, file=str(path))


def build_artifact(folder: Path) -> tuple[Manifest, bytes]:
    """The manifest and the artifact bytes for a plugin source folder (deterministic)."""
    folder = Path(folder)
    manifest = read_source_manifest(folder)
    if not (folder / "__init__.py").is_file():
        raise ConfigError(f"{folder}: no __init__.py; a plugin is a Python package")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for path in _source_files(folder):
            rel = path.relative_to(folder).as_posix()
            info = zipfile.ZipInfo(f"{manifest.domain}/{rel}", date_time=_FIXED_DATE)
            info.external_attr = (stat.S_IFREG | _FILE_MODE) << 16
            info.create_system = 3  # unix, whatever the build host
            info.compress_type = _COMPRESSION
            zf.writestr(info, path.read_bytes(), compress_type=_COMPRESSION, compresslevel=_COMPRESS_LEVEL)
    return manifest, buffer.getvalue()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def safe_member_names(zf: zipfile.ZipFile, domain: str, where: str) -> list[str]:
    """Member names, refusing anything that could land outside <domain>/ when extracted."""
    names = []
    infos = zf.infolist()
    if len(infos) > MAX_ARTIFACT_FILES:
        raise ValueError(f"{where}: {len(infos)} files, more than the {MAX_ARTIFACT_FILES} allowed")
    total = 0
    for info in infos:
        name = info.filename
        parts = PurePosixPath(name).parts
        if (name.startswith("/") or "\\" in name or ".." in parts or not parts or parts[0] != domain
                or info.is_dir() or stat.S_ISLNK(info.external_attr >> 16)):
            raise ValueError(f"{where}: unsafe entry {name!r} (must be a plain file under {domain}/)")
        total += info.file_size
        if total > MAX_ARTIFACT_BYTES:
            raise ValueError(f"{where}: unpacks to more than {MAX_ARTIFACT_BYTES} bytes")
        names.append(name)
    return names


def file_hashes(artifact: bytes, domain: str, where: str = "artifact") -> dict[str, str]:
    """sha256 of every file in the artifact, by path relative to the package folder."""
    with zipfile.ZipFile(io.BytesIO(artifact)) as zf:
        return {name.split("/", 1)[1]: sha256(zf.read(name)) for name in safe_member_names(zf, domain, where)}


def artifact_manifest(artifact: bytes, where: str = "artifact") -> dict:
    """The raw manifest.json inside an artifact (the only file read before verification)."""
    try:
        with zipfile.ZipFile(io.BytesIO(artifact)) as zf:
            names = [n for n in zf.namelist() if n.count("/") == 1 and n.endswith("/manifest.json")]
            if len(names) != 1:
                raise ValueError(f"{where}: expected exactly one <domain>/manifest.json, found {len(names)}")
            return json.loads(zf.read(names[0]))
    except zipfile.BadZipFile as exc:
        raise ValueError(f"{where}: not a zip artifact ({exc})") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where}: manifest.json is not valid JSON ({exc.msg})") from None
