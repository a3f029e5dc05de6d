"""The command line's own behaviour, whatever the verb: a reader that closes the pipe early."""

from __future__ import annotations

import subprocess
import sys


def test_output_cut_short_by_a_closed_pipe_ends_quietly():
    # A verb that prints more than a pipe holds, read by something that stops after one line.
    code = """
import sys
from sitegate import cli

def chatty(args):
    for i in range(200_000):
        print("line", i)

parser = cli.build_parser()
parser._subparsers._group_actions[0].choices["check"].set_defaults(func=chatty)
cli.build_parser = lambda: parser
sys.exit(cli.main(["check", "x.yaml"]))
"""
    done = subprocess.run(f"{sys.executable} -c \"$CODE\" | head -1; echo status=${{PIPESTATUS[0]}}",
                          shell=True, executable="/bin/bash", capture_output=True, text=True, timeout=60,
                          env={"CODE": code, "PATH": "/usr/bin:/bin"})
    assert done.stdout.splitlines() == ["line 0", "status=141"], done.stdout + done.stderr
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr


def test_every_verb_help_opens_with_what_the_verb_does():
    from sitegate import cli

    def verbs(parser, path=()):
        for action in parser._subparsers._group_actions if parser._subparsers else ():
            for name, sub in action.choices.items():
                yield (*path, name), sub
                yield from verbs(sub, (*path, name))

    found = dict(verbs(cli.build_parser()))
    assert {("run",), ("status",), ("diff",), ("plugin", "new"), ("token", "create")} <= set(found)
    missing = [" ".join(path) for path, parser in found.items() if not parser.description]
    assert not missing, f"`sitegate VERB --help` without a description: {missing}"
    assert found[("run",)].format_help().split("\n\n")[1].startswith("Run a site until SIGINT/SIGTERM")


def test_version_and_a_misspelt_command():
    from sitegate import CORE_API_VERSION, __version__
    run = lambda *argv: subprocess.run([sys.executable, "-m", "sitegate.cli", *argv], capture_output=True,  # noqa: E731
                                       text=True, timeout=60)
    out = run("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"sitegate {__version__} (core plugin API {CORE_API_VERSION})"
    out = run("stauts", "site.yaml")
    assert out.returncode == 2
    assert out.stderr.strip() == "sitegate: unknown command 'stauts'; did you mean 'status'? (sitegate --help lists them)"
    # An integration's tools still go to the integration (opcua is no slip of any command).
    out = run("opcua", "--dev-plugins", "plugins")
    assert "unknown command" not in out.stderr, out.stderr


def test_a_file_a_verb_cannot_use_is_one_line_naming_it_not_a_traceback(tmp_path):
    code = """
import sys
from sitegate import cli

def opens(args):
    open(sys.argv[1] + "/inside/site.yaml")

parser = cli.build_parser()
parser._subparsers._group_actions[0].choices["check"].set_defaults(func=opens)
cli.build_parser = lambda: parser
sys.exit(cli.main(["check", "x.yaml"]))
"""
    (tmp_path / "a-file").write_text("")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "a-file")], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip() == f"error: {tmp_path}/a-file/inside/site.yaml: Not a directory", done.stderr
    # ... and where a verb can say it better, it does: `plugin new --dir` naming a file.
    done = subprocess.run([sys.executable, "-m", "sitegate.cli", "plugin", "new", "acme_x", "--kind", "sink",
                           "--dir", str(tmp_path / "a-file")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip() == f"error: --dir {tmp_path}/a-file: not a folder; give the folder to create acme_x/ in"
