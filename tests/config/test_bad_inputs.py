"""Every bad site file in tests/config/bad/ is refused with the problem it was written for.

Each file states what `sitegate check` must print, in `# expect:` lines:
``file:line: path: message`` (path `-` when the problem has no path, message
a prefix or part of the text). All expectations must be met, and nothing else
reported, so a stray error from a placeholder value fails the test too.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

BAD = Path(__file__).parent / "bad"

_EXPECT = re.compile(r"^# expect: (?P<file>[^:]+):(?P<line>\d+): (?P<path>\S+): (?P<message>.+)$")


def _bad_files() -> list[Path]:
    return sorted(p for p in BAD.rglob("*.yaml") if "# expect:" in p.read_text(encoding="utf-8"))


def _expectations(site: Path) -> list[tuple[str, int, str, str]]:
    out = []
    for line in site.read_text(encoding="utf-8").splitlines():
        m = _EXPECT.match(line)
        if m:
            path = "" if m["path"] == "-" else m["path"]
            out.append((str(BAD / m["file"]), int(m["line"]), path, m["message"]))
    return out


def test_the_corpus_covers_the_bad_inputs_of_issue_3():
    names = {p.relative_to(BAD).as_posix() for p in _bad_files()}
    required = {"wrong_type.yaml", "unknown_key.yaml", "missing_key.yaml", "no_such_secret.yaml",
                "nosecrets/site.yaml", "unknown_domain.yaml", "dependency_cycle.yaml", "missing_dependency.yaml",
                "core_api.yaml", "duplicate_ids.yaml", "yaml_syntax.yaml", "empty.yaml", "include_missing.yaml",
                "include_cycle.yaml", "included_error.yaml"}
    assert required <= names, f"missing from tests/config/bad: {sorted(required - names)}"


@pytest.mark.parametrize("site", _bad_files(), ids=lambda p: p.relative_to(BAD).with_suffix("").as_posix())
def test_bad_site_file_is_refused_with_its_place(site, check):
    expected = _expectations(site)
    assert expected, f"{site} states no `# expect:` line"
    issues = check(site)
    for file, line, path, message in expected:
        matching = [i for i in issues if i.file == file and i.line == line and i.path == path and message in i.message]
        assert matching, f"expected {file}:{line}: {path}: {message}\n got:\n" + "\n".join(map(str, issues))
    assert len(issues) == len(expected), "unexpected extra issues:\n" + "\n".join(map(str, issues))


# A subprocess costs seconds on a busy machine: a few files, one per kind of problem
# (schema, include, plugins); the rest are checked in-process above.
@pytest.mark.parametrize("name", ["wrong_type.yaml", "include_cycle.yaml", "dependency_cycle.yaml"])
def test_sitegate_check_exits_non_zero_and_prints_the_place(name, plugins_dir):
    site = BAD / name
    result = subprocess.run([sys.executable, "-m", "sitegate.cli", "check", str(site), "--dev-plugins",
                             str(plugins_dir)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stdout + result.stderr
    for file, line, path, message in _expectations(site):
        prefix = f"{file}:{line}: " + (f"{path}: " if path else "")
        assert any(out.startswith(prefix) and message in out for out in result.stdout.splitlines()), result.stdout
    assert "UNSIGNED" in result.stderr   # --dev-plugins is loud


def test_secret_values_never_appear_in_check_output(write, check):
    write("secrets.yaml", "port_secret: hunter2-port\n")
    site = write("site.yaml", """
        site: t
        entries:
          - id: press
            domain: sensor
            config: {port: !secret port_secret}
        """)
    issues = check(site)
    assert [str(i.path) for i in issues] == ["entries[0].config.port"]
    assert "hunter2" not in issues[0].message and "**********" in issues[0].message
