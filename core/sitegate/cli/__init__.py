"""The `sitegate` command line: one verb per module in this package.

Each module here exposes ``register(subparsers)`` that adds its verbs; the
handler a verb sets with ``set_defaults(func=...)`` returns the exit status.
Adding a verb means adding a module and naming it in ``_MODULES`` below.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import sys

# Order is the order shown in --help.
_MODULES = [
    "site",       # check, config, diff
    "run",        # run
    "dlq",        # dead letters: list, show, replay, purge
    "status",     # status, diagnostics
    "plugin",     # plugin authors: keygen, build, publish, new
    "plugins",    # site: install, upgrade, rollback, list
    "registry",   # registry owner: init, add-publisher, ...
    "token",      # API access: create, revoke, list
    "rollout",    # device updates: start, status, pause, resume, abort
]


def build_parser() -> argparse.ArgumentParser:
    from .. import CORE_API_VERSION, __version__
    parser = argparse.ArgumentParser(
        prog="sitegate",
        description="sitegate: compose, check and run an IoT edge gateway site.",
    )
    parser.add_argument("--version", action="version",
                        version=f"sitegate {__version__} (core plugin API {CORE_API_VERSION})")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _MODULES:
        try:
            module = importlib.import_module(f"sitegate.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"sitegate.cli.{name}":
                continue  # verb group not built yet
            raise
        module.register(sub)
    _describe(parser)
    return parser


def _describe(parser: argparse.ArgumentParser) -> None:
    # `sitegate VERB --help` opens with what the verb does: a verb without a description of its own
    # gets the one-line help its group lists, at every level (`sitegate plugin new --help` too).
    for action in parser._subparsers._group_actions if parser._subparsers else ():
        helps = {choice.dest: choice.help for choice in action._choices_actions}
        for name, verb in action.choices.items():
            if verb.description is None and helps.get(name):
                verb.description = helps[name][:1].upper() + helps[name][1:] + "."
            _describe(verb)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    commands = set(parser._subparsers._group_actions[0].choices) if parser._subparsers else set()
    if argv and not argv[0].startswith("-") and argv[0] not in commands and argv[0].isidentifier():
        close = difflib.get_close_matches(argv[0], commands, n=1, cutoff=0.75)
        if close:       # `sitegate stauts`: a slip of the finger, not an integration's tools
            print(f"sitegate: unknown command {argv[0]!r}; did you mean {close[0]!r}? (sitegate --help lists them)",
                  file=sys.stderr)
            return 2
        # Not a core verb: an integration's own tools (`sitegate opcua browse ...`).
        from .integration import run as run_integration_command
        return run_integration_command(argv)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from ..errors import ConfigError, SitegateError
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except ConfigError as exc:      # a verb that did not say it itself (a site file that is missing, ...)
        for issue in exc.issues:
            print(f"error: {issue}", file=sys.stderr)
        return 1
    except SitegateError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # `sitegate diagnostics | head`: the reader has what it wanted; no traceback. Python would
        # complain again while flushing stdout at exit, so point stdout at /dev/null first.
        import os
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141     # 128 + SIGPIPE, as the shell reports it
    except OSError as exc:          # a file or folder the verb could not use: the message names it
        print(f"error: {exc.filename + ': ' if exc.filename else ''}{exc.strerror or exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
