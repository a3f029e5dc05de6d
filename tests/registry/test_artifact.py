"""Artifacts: the same source gives the same bytes, whatever order or time the files were written in."""

from __future__ import annotations

import hashlib
import json
import random
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sitegate.errors import ConfigError
from sitegate.registry.artifact import build_artifact, file_hashes

_names = st.from_regex(r"[a-z][a-z0-9_]{0,8}\.(py|json|txt)", fullmatch=True)
_files = st.dictionaries(st.tuples(st.sampled_from(["", "sub/", "sub/deeper/"]), _names),
                         st.binary(max_size=300), max_size=6)


def _write(folder: Path, files: dict, order_seed: int) -> None:
    folder.mkdir(parents=True)
    (folder / "__init__.py").write_text("")
    (folder / "manifest.json").write_text(json.dumps({"domain": "prop", "name": "P", "version": "1.0.0",
                                                      "kinds": ["sink"], "requires": ">=1.0,<2"}))
    items = list(files.items())
    random.Random(order_seed).shuffle(items)
    for (sub, name), data in items:
        path = folder / sub / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


@settings(max_examples=25, deadline=None)
@given(files=_files, seed=st.integers(0, 1000))
def test_same_source_same_bytes_and_every_file_hashed(files, seed):
    with tempfile.TemporaryDirectory() as tmp:
        a, b = Path(tmp) / "a" / "prop", Path(tmp) / "b" / "prop"
        _write(a, files, seed)
        _write(b, files, seed + 1)
        _, first = build_artifact(a)
        _, second = build_artifact(b)
        assert first == second
        hashes = file_hashes(first, "prop")
        for (sub, name), data in files.items():
            if name != "__init__.py" and name != "manifest.json":
                assert hashes[f"{sub}{name}"] == hashlib.sha256(data).hexdigest()


def test_tests_caches_and_dotfiles_stay_out(tmp_path):
    folder = tmp_path / "prop"
    _write(folder, {}, 0)
    for extra in ("tests/test_a.py", "__pycache__/x.pyc", ".hidden", "mod.pyc", "sub/tests/t.py"):
        (folder / extra).parent.mkdir(parents=True, exist_ok=True)
        (folder / extra).write_text("x")
    _, data = build_artifact(folder)
    assert sorted(file_hashes(data, "prop")) == ["__init__.py", "manifest.json"]


def test_symlink_in_source_is_refused(tmp_path):
    folder = tmp_path / "prop"
    _write(folder, {}, 0)
    (folder / "link.py").symlink_to("/etc/passwd")
    with pytest.raises(ConfigError, match="symlinks cannot go into a plugin artifact"):
        build_artifact(folder)


def test_bad_manifest_names_the_field(tmp_path):
    folder = tmp_path / "prop"
    _write(folder, {}, 0)
    (folder / "manifest.json").write_text(json.dumps({"domain": "prop", "name": "P", "version": "one",
                                                      "kinds": ["sink"], "requires": ">=1.0,<2"}))
    with pytest.raises(ConfigError, match="version") as info:
        build_artifact(folder)
    assert "manifest.json" in str(info.value) and "'one'" in str(info.value)
