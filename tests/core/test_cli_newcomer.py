"""What a newcomer gets when a step goes wrong: a one-line error that says what and where, never a
traceback. Each test runs the real `sitegate` command, as a user types it."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SITEGATE = [sys.executable, "-m", "sitegate.cli"]


def sitegate(*argv, cwd, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run(SITEGATE + [str(a) for a in argv], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def test_run_on_a_taken_api_port_names_the_site_the_port_and_the_fix(tmp_path):
    # The quickstart's site beside a demo that still runs: both want the API port.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        (tmp_path / "site.yaml").write_text(f"""
site: clash
api: {{port: {port}}}
observability: {{port: 0}}
entries:
  - {{id: line, domain: simulator, config: {{devices: 1, interval: 1s}}}}
""")
        out = sitegate("run", "site.yaml", "--registry", REPO / "registry", cwd=tmp_path, timeout=60)
    text = out.stdout + out.stderr
    assert out.returncode == 1, text
    assert "Traceback" not in text, text
    assert (f"error: site.yaml: api: cannot serve the WebSocket API and dashboard on 127.0.0.1:{port} "
            f"(Address already in use); set api.port to a free port (0 picks one)") in out.stdout, text


def _adapter_site(folder: Path) -> None:
    (folder / "site.yaml").write_text("site: mine\nentries:\n  - {id: dev, domain: acme_meter, config: {interval: 1s}}\n")


def test_dev_plugins_pointing_at_the_integration_itself_names_the_folder_to_give(tmp_path):
    # The most natural slip: `--dev-plugins acme_meter` instead of the folder that holds it.
    assert sitegate("plugin", "new", "acme_meter", "--kind", "adapter", cwd=tmp_path).returncode == 0
    _adapter_site(tmp_path)
    for command in ("check", "run"):
        out = sitegate(command, "site.yaml", "--dev-plugins", "acme_meter", cwd=tmp_path, timeout=60)
        assert out.returncode != 0, out.stdout
        assert ("--dev-plugins acme_meter: this is an integration folder itself (it holds manifest.json); "
                "give the folder that holds it: --dev-plugins .") in out.stdout + out.stderr, command
    # ... and given the way the message says, it loads.
    out = sitegate("check", "site.yaml", "--dev-plugins", ".", cwd=tmp_path)
    assert out.returncode == 0 and "OK site.yaml" in out.stdout, out.stdout + out.stderr


def test_dev_plugins_that_do_not_exist_are_refused_with_the_full_path(tmp_path):
    _adapter_site(tmp_path)
    (tmp_path / "a-file").write_text("")
    for given, what in (("plugns", "no such folder"), ("a-file", "not a folder")):
        out = sitegate("check", "site.yaml", "--dev-plugins", given, cwd=tmp_path)
        assert out.returncode == 2, out.stdout + out.stderr
        assert f"error: --dev-plugins {given}: {what} ({tmp_path / given})" in out.stderr, out.stderr
        assert "available integrations: none" not in out.stdout


def test_no_registry_says_where_it_was_looked_for_and_how_to_get_one(tmp_path):
    # Outside the checkout, the default ./registry is not there.
    _adapter_site(tmp_path)
    out = sitegate("check", "site.yaml", cwd=tmp_path)
    assert out.returncode == 2, out.stdout + out.stderr
    assert f"no signed registry at registry ({tmp_path / 'registry'})" in out.stderr, out.stderr
    assert "`make registry`" in out.stderr and "`sitegate registry init`" in out.stderr


def test_plugin_new_refuses_a_name_that_would_shadow_a_module_its_tests_import(tmp_path):
    # A plugin folder called `sitegate` (or `json`, `trio`) hides that module from its own tests.
    for name, where in (("sitegate", str(REPO / "core" / "sitegate")), ("json", "the Python standard library"),
                        ("trio", "trio")):
        out = sitegate("plugin", "new", name, "--kind", "sink", cwd=tmp_path)
        assert out.returncode == 1, out.stdout + out.stderr
        assert f"error: NAME {name!r} is already the name of a Python module (" in out.stderr, out.stderr
        assert where in out.stderr and f"(e.g. 'acme_{name}')" in out.stderr, out.stderr
    assert list(tmp_path.iterdir()) == []


def test_plugin_new_next_steps_work_as_printed_and_a_bad_interval_reads_as_a_duration(tmp_path):
    from sitegate.scaffold import KINDS
    for kind in KINDS:     # processors and sinks: their README's site uses the simulator and history too
        folder = tmp_path / kind
        folder.mkdir()
        out = sitegate("plugin", "new", "acme_meter", "--kind", kind, cwd=folder)
        assert out.returncode == 0, out.stderr
        check = next(line for line in out.stdout.splitlines() if "sitegate check" in line)
        command, _, why = check.strip().partition("#")
        assert "acme_meter/README.md" in why, check
        readme = (folder / "acme_meter" / "README.md").read_text()
        assert command.strip() in readme, readme       # the README says the same
        (folder / "site.yaml").write_text(readme.split("```yaml\n", 1)[1].split("```", 1)[0])
        done = sitegate(*command.split()[1:], cwd=folder)
        assert done.returncode == 0 and "OK site.yaml" in done.stdout, f"{kind}: {done.stdout}{done.stderr}"
    # The scaffold's own config check, as a site author meets it.
    folder = tmp_path / "adapter"
    (folder / "site.yaml").write_text((folder / "site.yaml").read_text().replace("interval: 1s", "interval: 0s"))
    done = sitegate("check", "site.yaml", "--dev-plugins", ".", cwd=folder)
    assert done.returncode == 1, done.stdout
    assert "interval: expected a positive duration, got 0 s" in done.stdout, done.stdout


def test_a_misspelt_domain_is_reported_without_a_manifest_path_that_does_not_exist(tmp_path):
    (tmp_path / "site.yaml").write_text("site: x\nentries:\n  - {id: line, domain: simulater}\n")
    out = sitegate("check", "site.yaml", "--registry", REPO / "registry", cwd=tmp_path)
    assert out.returncode == 1, out.stdout + out.stderr
    assert ("site.yaml:3: entries[0].domain: integration 'simulater' cannot be used: plugin 'simulater': "
            f"refused (not-found): no signed plugin 'simulater' in the registry at {REPO / 'registry'}") in out.stdout
    assert "manifest.json" not in out.stdout, out.stdout


def test_a_plugin_that_fails_to_import_is_reported_with_its_file_and_line(tmp_path):
    assert sitegate("plugin", "new", "acme_meter", "--kind", "adapter", cwd=tmp_path).returncode == 0
    _adapter_site(tmp_path)
    code = tmp_path / "acme_meter" / "__init__.py"
    lines = code.read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("import trio")) + 1
    for broken, expected in (("import trio, acme_helpers", "ModuleNotFoundError: No module named 'acme_helpers'"),
                             ("import trio (", "SyntaxError: ")):
        code.write_text("\n".join(lines[:at - 1] + [broken] + lines[at:]) + "\n")
        out = sitegate("check", "site.yaml", "--dev-plugins", ".", cwd=tmp_path)
        assert out.returncode == 1, out.stdout
        assert f"plugin 'acme_meter': import failed at {code}:{at}: {expected}" in out.stdout, out.stdout


def test_a_state_folder_pinned_to_another_registry_says_so_and_the_command_it_gives_fixes_it(tmp_path):
    # Following the quickstart (./registry), then a registry of one's own for the same site: the site's
    # state folder still trusts the first registry's root, and every plugin is refused.
    import io
    from sitegate.registry.devpublish import devpublish
    for name in ("first", "second"):
        assert not devpublish(REPO / "plugins", tmp_path / name, out=io.StringIO())
    (tmp_path / "site.yaml").write_text("site: x\nentries:\n  - {id: line, domain: simulator}\n")
    assert sitegate("check", "site.yaml", "--registry", "first", cwd=tmp_path).returncode == 0
    out = sitegate("check", "site.yaml", "--registry", "second", cwd=tmp_path)
    assert out.returncode == 1, out.stdout + out.stderr
    assert (".sitegate/plugins/trust trusts another registry (the root it pinned at first use is not one of "
            "second's)") in out.stdout, out.stdout
    fix = out.stdout.split("pin it: `", 1)[1].split("`", 1)[0]
    assert fix == ("sitegate plugins trust second/metadata/1.root.json --registry second --state .sitegate "
                   "--replace"), fix
    assert sitegate(*fix.split()[1:], cwd=tmp_path).returncode == 0
    out = sitegate("check", "site.yaml", "--registry", "second", cwd=tmp_path)
    assert out.returncode == 0 and "OK site.yaml" in out.stdout, out.stdout
    # The registry the site trusts, its timestamp edited after signing: refused, and no talk of another registry.
    import json
    stamp = tmp_path / "second" / "metadata" / "timestamp.json"
    doc = json.loads(stamp.read_text())
    doc["signed"]["expires"] = doc["signed"]["expires"].replace("20", "21", 1)
    stamp.write_text(json.dumps(doc))
    out = sitegate("check", "site.yaml", "--registry", "second", cwd=tmp_path)
    assert out.returncode == 1 and "refused (signature)" in out.stdout, out.stdout
    assert "trusts another registry" not in out.stdout, out.stdout


async def test_a_misspelt_api_command_is_answered_with_the_closest_known_one(tmp_path):
    from sitegate.testing import api_client, running_site
    site = "site: t\nentries:\n  - {id: sim, domain: simulator, config: {devices: 1, interval: 100ms}}\n"
    async with running_site(tmp_path, site, plugin_dirs=[REPO / "plugins"]) as host:
        async with api_client(host, role="viewer") as ws:
            for sent, meant in (("lst_devices", "list_devices"), ("list_entries", "get_entries"),
                                ("get_history", "history")):
                res = await ws.call(sent)
                assert res["error"]["code"] == "unknown_command", res
                assert f"unknown command type {sent!r}; did you mean {meant!r}? known: " in res["error"]["message"]
            res = await ws.call("make_coffee")
            assert "did you mean" not in res["error"]["message"] and "known: device_command" in res["error"]["message"]


def test_dev_plugins_without_sitegates_own_says_where_they_are(tmp_path):
    # A processor author's site uses the simulator; --dev-plugins . alone does not hold it.
    assert sitegate("plugin", "new", "acme_scale", "--kind", "processor", cwd=tmp_path).returncode == 0
    (tmp_path / "site.yaml").write_text("site: x\nentries:\n  - {id: sim, domain: simulator}\n")
    out = sitegate("check", "site.yaml", "--dev-plugins", ".", cwd=tmp_path)
    assert out.returncode == 1, out.stdout
    assert ("unknown integration domain 'simulator'; available integrations: acme_scale ('simulator' is one of "
            "sitegate's own integrations, and --dev-plugins searches only the folders it names: add "
            f"--dev-plugins {REPO / 'plugins'})") in out.stdout, out.stdout
    done = sitegate("check", "site.yaml", "--dev-plugins", ".", "--dev-plugins", REPO / "plugins", cwd=tmp_path)
    assert done.returncode == 0, done.stdout
    # A name that is nobody's gets no such hint.
    (tmp_path / "site.yaml").write_text("site: x\nentries:\n  - {id: sim, domain: simulatr}\n")
    assert "sitegate's own" not in sitegate("check", "site.yaml", "--dev-plugins", ".", cwd=tmp_path).stdout


def test_every_verb_that_takes_a_site_file_says_when_it_is_missing_without_a_traceback(tmp_path):
    for argv in (("status", "nothere.yaml"), ("diagnostics", "nothere.yaml"), ("token", "list", "nothere.yaml"),
                 ("token", "create", "nothere.yaml", "--role", "viewer"), ("token", "revoke", "nothere.yaml", "x"),
                 ("check", "nothere.yaml", "--registry", REPO / "registry"),
                 ("run", "nothere.yaml", "--registry", REPO / "registry")):
        out = sitegate(*argv, cwd=tmp_path)
        text = out.stdout + out.stderr
        assert out.returncode == 1 and "Traceback" not in text, f"{argv}: {text}"
        assert "nothere.yaml: site file not found" in text, f"{argv}: {text}"
    out = sitegate("plugins", "trust", "root.json", "--state", "state", cwd=tmp_path)
    assert out.returncode == 1 and out.stderr.startswith("error: root.json: no such file; give the registry's "
                                                         "1.root.json (REGISTRY/metadata/1.root.json)"), out.stderr
    assert not (tmp_path / "state" / "plugins" / "trust" / "metadata" / "root.json").exists()


def test_plugin_build_of_a_folder_that_is_not_there_says_what_to_give(tmp_path):
    assert sitegate("plugin", "new", "acme_meter", "--kind", "adapter", cwd=tmp_path).returncode == 0
    for given, what in (("acme_metr", "no such folder"), ("acme_meter/manifest.json", "not a folder")):
        out = sitegate("plugin", "build", given, cwd=tmp_path)
        assert out.returncode == 1, out.stdout
        assert out.stderr.strip() == (f"error: {given}: {what} ({tmp_path / given}); give the integration's folder, "
                                      "the one holding manifest.json"), out.stderr
    assert not (tmp_path / "dist").exists()
    assert sitegate("plugin", "build", "acme_meter", cwd=tmp_path).stdout.startswith("dist/acme_meter-0.1.0.zip")


def test_run_log_level_takes_any_case_and_refuses_an_unknown_one_before_starting(tmp_path):
    out = sitegate("run", "site.yaml", "--log-level", "verbose", cwd=tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert "argument --log-level: invalid choice: 'VERBOSE' (choose from 'DEBUG', 'INFO', 'WARNING', 'ERROR')" \
        in out.stderr, out.stderr
    # lower case is fine: it gets as far as the (missing) site file
    out = sitegate("run", "site.yaml", "--log-level", "debug", "--registry", REPO / "registry", cwd=tmp_path)
    assert out.returncode == 1 and "site.yaml: site file not found" in out.stdout + out.stderr, out.stdout + out.stderr


def test_plugins_list_names_its_columns(tmp_path):
    (tmp_path / "site.yaml").write_text("site: x\nentries:\n  - {id: line, domain: simulator}\n")
    assert sitegate("check", "site.yaml", "--registry", REPO / "registry", cwd=tmp_path).returncode == 0
    lines = sitegate("plugins", "list", "--state", ".sitegate", "--verify", cwd=tmp_path).stdout.splitlines()
    assert lines[0].split() == ["plugin", "version", "previous", "publisher", "files"], lines
    assert lines[1].split() == ["simulator", "1.0.0", "previous", "-", "sitegate", "verified"], lines
    assert lines[1].index("1.0.0") == lines[0].index("version") and lines[1].index("sitegate") == lines[0].index("publisher")


def test_a_second_token_of_the_same_name_is_made_with_a_note_that_revoking_the_name_takes_both(tmp_path):
    (tmp_path / "site.yaml").write_text("site: x\nentries: []\n")
    first = sitegate("token", "create", "site.yaml", "--role", "viewer", "--name", "my-ui", cwd=tmp_path)
    assert first.returncode == 0 and first.stderr == "", first.stderr
    first_id = first.stdout.split("# id ", 1)[1].split(",", 1)[0]
    second = sitegate("token", "create", "site.yaml", "--role", "viewer", "--name", "my-ui", cwd=tmp_path)
    assert second.returncode == 0 and second.stdout.startswith("sg_"), second.stdout
    assert second.stderr.strip() == (f"note: active token(s) {first_id} have the name 'my-ui' too; `sitegate token "
                                     "revoke site.yaml my-ui` revokes them all, an id only that one")
    revoked = sitegate("token", "revoke", "site.yaml", "my-ui", cwd=tmp_path).stdout
    assert revoked.count("revoked ") == 2, revoked


def test_run_warns_of_a_route_to_no_sink_which_check_refuses(tmp_path):
    import signal
    import time
    (tmp_path / "site.yaml").write_text("""site: x
api: {port: 0}
observability: {port: 0}
entries:
  - {id: line, domain: simulator, config: {devices: 1, interval: 100ms}}
  - {id: hist, domain: history}
routes:
  - {name: all, from: ["line.*/*"], to: [hst]}
""")
    proc = subprocess.Popen(SITEGATE + ["run", "site.yaml", "--registry", str(REPO / "registry")], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any("running with 2 entries" in line for line in lines):
            lines.append(proc.stdout.readline())
    finally:
        proc.send_signal(signal.SIGTERM)
        lines += proc.communicate(timeout=30)[0].splitlines()
    warned = [line for line in lines if "WARNING" in line and "routes[0]" in line]
    assert warned and warned[0].split("WARNING", 1)[1].strip() == (
        "site.yaml:8: routes[0].to[0]: no entry 'hst'; sink entries: hist; this route delivers nothing until it is "
        "fixed (`sitegate check` lists every problem)"), "".join(lines)
    assert proc.returncode == 0


def test_check_counts_in_english_one_entry_one_route_one_file(tmp_path):
    def check(text):
        (tmp_path / "site.yaml").write_text(text)
        return sitegate("check", "site.yaml", "--registry", REPO / "registry", cwd=tmp_path)

    out = check("site: one\nentries:\n  - {id: sim, domain: simulator, config: {devices: 1}}\n"
                "  - {id: keep, domain: history}\nroutes:\n  - {from: ['sim.*/*'], to: [keep]}\n")
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.startswith("OK site.yaml: site 'one', 2 entries, 1 route; integrations: "), out.stdout
    assert out.stdout.rstrip().endswith("; 1 file read"), out.stdout
    assert sitegate("config", "site.yaml", cwd=tmp_path).stdout.startswith("# site.yaml, composed from 1 file; ")
    out = check("site: one\nentries:\n  - {id: sim, domain: simulator, config: {devices: 1}}\n")
    assert out.stdout.startswith("OK site.yaml: site 'one', 1 entry, 0 routes; "), out.stdout + out.stderr
    out = check("site: one\nentries: [{id: a, domain: simulator, config: {devices: 0}}]\n")
    assert out.returncode == 1 and out.stderr.strip().endswith("1 problem in site.yaml"), out.stdout + out.stderr
