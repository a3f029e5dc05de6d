"""`sitegate check | config | diff SITE`: look at a site file without running it.

check validates everything (schema, secrets, includes, plugins, routes) and
lists every problem; config prints the composed site with secrets masked; diff
compares it with what a running site applied (config/changes.py).
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

import attrs

from ..errors import ConfigError, Issue, SitegateError
from .common import counted


def register(sub: argparse._SubParsersAction) -> None:
    from .common import add_plugin_source_args

    p = sub.add_parser("check", help="validate a site file and its plugins without running anything",
                       description="Validate SITE: YAML, includes, secrets, schema, integrations, dependencies, "
                                   "entry configs and routes. Prints every problem as `file:line: path: message` "
                                   "and exits 1 if there is any.")
    p.add_argument("site", type=Path, help="the site file (YAML)")
    p.add_argument("--json", action="store_true",
                   help='print {"ok": ..., "issues": [{"file", "line", "path", "message"}]} for tools')
    add_plugin_source_args(p)
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("config", help="print the fully composed site (layers, includes) with secrets masked")
    p.add_argument("site", type=Path, help="the site file (YAML)")
    p.add_argument("--with-defaults", action="store_true",
                   help="print every key, with the defaults filled in, instead of what the files say")
    p.set_defaults(func=cmd_config)

    p = sub.add_parser("diff", help="show what applying the site would change in the running site (changes nothing)")
    p.add_argument("site", type=Path, help="the site file (YAML)")
    p.add_argument("--state", metavar="DIR", type=Path, default=None,
                   help="the running site's state folder (default: runtime.state_dir or .sitegate/ beside the site)")
    p.add_argument("--exit-code", action="store_true", help="exit 1 if applying would change anything")
    p.set_defaults(func=cmd_diff)


def _print_issues(issues: list[Issue], site: Path) -> None:
    for issue in issues:
        print(str(issue) if issue.file else f"{site}: {issue}")
    print(f"{counted(len(issues), 'problem')} in {site}", file=sys.stderr)


def cmd_check(args: argparse.Namespace) -> int:
    from ..config.validate import check_site
    from ..loader import Loader
    from .common import plugin_source_from_args

    try:
        source = plugin_source_from_args(args)
    except ConfigError as exc:   # the registry needs the site's pins, and the site does not load
        _print_issues(exc.issues, args.site)
        return 1
    except SitegateError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    loader = Loader(source)
    loaded, issues = check_site(args.site, loader)
    if args.json:
        print(json.dumps({"ok": not issues, "site": str(args.site),
                          "issues": [attrs.asdict(i) for i in issues]}, indent=1))
        return 1 if issues else 0
    if issues:
        _print_issues(issues, args.site)
        return 1
    assert loaded is not None
    site = loaded.site
    versions = ", ".join(f"{d} {i.manifest.version}" for d, i in sorted(loader.loaded.items())) or "none"
    disabled = sum(1 for e in site.entries if e.disabled)
    print(f"OK {args.site}: site {site.site!r}, {counted(len(site.entries), 'entry', 'entries')}"
          f"{f' ({disabled} disabled)' if disabled else ''}, {counted(len(site.routes), 'route')}; "
          f"integrations: {versions}; {counted(len(loaded.files), 'file')} read")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    from ..config import load_site
    from ..config.masking import mask_secrets, render_yaml
    from ..structure import converter

    try:
        loaded = load_site(args.site)
    except ConfigError as exc:
        _print_issues(exc.issues, args.site)
        return 1
    data = converter.unstructure(loaded.site) if args.with_defaults else loaded.raw
    sys.stdout.write(f"# {args.site}, composed from {counted(len(loaded.files), 'file')}; secrets masked\n")
    sys.stdout.write(render_yaml(mask_secrets(data, loaded.secrets)))
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    from ..config import load_site
    from ..config.changes import APPLIED_FILE, plan_changes, read_applied, state_dir_for

    try:
        loaded = load_site(args.site)
    except ConfigError as exc:
        _print_issues(exc.issues, args.site)
        return 1
    state_dir = args.state or state_dir_for(loaded)
    try:
        old = read_applied(state_dir)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    site = loaded.site
    if old is None:
        print(f"no applied state in {state_dir / APPLIED_FILE}: nothing is running there; applying would add everything")
    else:
        when = old.get("applied_at")
        stamp = datetime.datetime.fromtimestamp(when, datetime.timezone.utc).strftime(" at %Y-%m-%d %H:%M:%S UTC") \
            if isinstance(when, (int, float)) else ""
        print(f"compared with {state_dir / APPLIED_FILE} (site {old.get('site')!r} applied{stamp})")
        if old.get("site") != site.site:
            print(f"note: the running site is {old.get('site')!r}, this file describes {site.site!r}")
    changes = plan_changes(old, site)
    for mark, label, ids in (("+", "added", changes.added), ("-", "removed", changes.removed),
                             ("~", "reloaded", changes.reloaded), ("=", "unchanged", changes.unchanged)):
        for entry_id in ids:
            print(f"  {mark} {label:<9} {entry_id}")
    print(f"  routes: {'changed' if changes.routes_changed else 'unchanged'}")
    summary = ", ".join(f"{len(ids)} {label}" for label, ids in (
        ("added", changes.added), ("removed", changes.removed), ("reloaded", changes.reloaded),
        ("unchanged", changes.unchanged)))
    print(summary + ("; nothing would change" if not changes.any else ""))
    return 1 if (args.exit_code and changes.any) else 0
