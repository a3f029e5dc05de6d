"""`sitegate plugin new`: every kind passes its own tests and loads in a site; one goes all the way
from the scaffold through build, signing and publishing to a site that runs it from the registry."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sitegate.scaffold import KINDS, ScaffoldError, create_integration, site_example
from sitegate.testing import write_site

from example_runs import REPO, SITEGATE, Child, history_rows


def sitegate(*argv, cwd, timeout=120):
    return subprocess.run(SITEGATE + [str(a) for a in argv], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def test_every_kind_passes_its_own_tests_and_checks_in_its_readme_site(tmp_path):
    for kind in KINDS:
        out = sitegate("plugin", "new", f"my_{kind}", "--kind", kind, cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        assert f"created my_{kind}/" in out.stdout
        site = tmp_path / f"site_{kind}.yaml"
        site.write_text(site_example(f"my_{kind}", kind))
        # The README's site loads the new integration and (for adapters, sinks) checks its config.
        checked = sitegate("check", site, "--dev-plugins", tmp_path, "--dev-plugins", REPO / "plugins", cwd=tmp_path)
        assert checked.returncode == 0, f"{kind}: {checked.stdout}{checked.stderr}"
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            *[f"my_{k}/tests" for k in KINDS]], cwd=tmp_path, capture_output=True, text=True,
                           timeout=300)
    assert tests.returncode == 0, tests.stdout[-6000:] + tests.stderr[-3000:]
    assert "11 passed" in tests.stdout, tests.stdout


def test_scaffolded_plugin_is_tested_built_signed_published_and_run_from_the_registry(tmp_path):
    out = sitegate("plugin", "new", "acme_scale", "--kind", "processor", "--title", "ACME scaling", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    own = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "acme_scale/tests"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert own.returncode == 0 and "4 passed" in own.stdout, own.stdout + own.stderr
    site = write_site(tmp_path, """
    site: scaffold/e2e
    plugins: {acme_scale: ">=0.1,<1"}
    entries:
      - {id: sim, domain: simulator, config: {devices: 1, interval: 20ms, points: [{name: c, shape: counter}]}}
      - {id: hist, domain: history}
    routes:
      - {name: scaled, from: ["sim.*/c"], through: [{acme_scale: {factor: 10, offset: 0.5}}], to: [hist]}
    """)
    # The third-party example's single command, pointed at the scaffolded plugin and this site.
    child = Child([sys.executable, str(REPO / "examples" / "third_party" / "run.py"), "--skip-tests",
                   "--plugin", str(tmp_path / "acme_scale"), "--work", str(tmp_path / "work"), "--site", str(site)])
    try:
        child.wait_line("acme_scale 0.1.0 published as plugins/acme/acme_scale-0.1.0.zip by acme")
        rows = child.wait_until(lambda: len(history_rows(tmp_path / ".sitegate")) >= 5 and history_rows(
            tmp_path / ".sitegate"), 60, "5 scaled readings in the history")
    finally:
        status = child.stop()
    assert all(v % 10 == 0.5 for _, _, v in rows), rows     # every reading went through the plugin
    assert status == 0, child.output
    assert "UNSIGNED" not in child.output


@pytest.mark.parametrize("name, kind, message", [
    ("My-Plugin", "adapter", "NAME 'My-Plugin': expected a domain of lowercase letters"),
    ("ok", "gateway", "--kind 'gateway': expected one of adapter, processor, sink, update_handler"),
    ("modbus", "adapter", "NAME 'modbus' is the domain of a first-party integration"),
])
def test_bad_names_and_kinds_say_what_is_wrong(tmp_path, name, kind, message):
    with pytest.raises(ScaffoldError, match=message.replace("(", r"\(")):
        create_integration(name, kind, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_an_existing_folder_is_never_overwritten(tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "mine.py").write_text("keep me")
    out = sitegate("plugin", "new", "taken", "--kind", "sink", cwd=tmp_path)
    assert out.returncode == 1 and "exists; refusing to overwrite" in out.stderr
    assert (tmp_path / "taken" / "mine.py").read_text() == "keep me"
