"""`sitegate plugin new NAME --kind KIND`: write a working integration to start from.

cli/plugin.py adds this verb through `register_verb`; the templates and the rules
for names live in sitegate.scaffold.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..scaffold import KINDS, ScaffoldError, check_command, create_integration


def cmd_new(args: argparse.Namespace) -> int:
    if Path(args.dir).exists() and not Path(args.dir).is_dir():
        print(f"error: --dir {args.dir}: not a folder; give the folder to create {args.name}/ in", file=sys.stderr)
        return 1
    try:
        folder = create_integration(args.name, args.kind, Path(args.dir), title=args.title, owner=args.owner)
    except ScaffoldError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    where = Path(args.dir)
    steps = [(f"python -m pytest {args.name}/tests", "its own tests, in a real site"),
             (check_command(args.kind), f"the site in {args.name}/README.md, saved as site.yaml"),
             (f"sitegate plugin build {args.name}", "then sign and publish it: docs/publishing.md")]
    width = max(len(command) for command, _ in steps)
    print(f"created {folder}/ ({args.kind}): manifest.json, __init__.py, tests/test_{args.name}.py, README.md\n"
          f"next, from {where}:")
    for command, why in steps:
        print(f"  {command:<{width}}   # {why}")
    return 0


def register_verb(verbs: argparse._SubParsersAction) -> None:
    p = verbs.add_parser("new", help="create a working integration (manifest, code, tests, README) to start from")
    p.add_argument("name", help="the integration's domain: lowercase letters, digits and _")
    p.add_argument("--kind", required=True, choices=KINDS, help="what it provides")
    p.add_argument("--dir", default=".", help="where to create the NAME/ folder (default: .)")
    p.add_argument("--title", default=None, help="human-readable name for the manifest (default: from NAME)")
    p.add_argument("--owner", default="@you", help="codeowner recorded in the manifest (default: @you)")
    p.set_defaults(func=cmd_new)
