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
