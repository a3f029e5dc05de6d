"""`sitegate <domain> <verb> ...`: verbs that integrations add (browse a server, make a certificate).

The integration is loaded exactly as a site loads it: verified from the
signed registry by default, or from ``--dev-plugins DIR`` (with the warning).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import ConfigError, SitegateError


def _source(dev: list[Path], registry: Path, state: Path, domain: str):
    from .common import check_registry_folder, dev_folder_source
    if dev:
        return dev_folder_source(dev)
    from ..registry.source import RegistrySource
    check_registry_folder(registry)
    return RegistrySource(registry, state, {domain: ""})


def run(argv: list[str]) -> int:
    domain = argv[0]
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--dev-plugins", type=Path, action="append", default=[])
    pre.add_argument("--registry", type=Path, default=Path("registry"))
    pre.add_argument("--state", type=Path, default=Path(".sitegate") / "tools")
    known, rest = pre.parse_known_args(argv[1:])
    from ..loader import Loader
    try:
        loader = Loader(_source(known.dev_plugins, known.registry, known.state, domain))
        integration = loader.load([domain])[-1]
    except (ConfigError, SitegateError) as exc:
        hint = " (nor is it a sitegate command: sitegate --help lists them)" if "unknown integration domain" in str(exc) else ""
        print(f"error: sitegate {domain}: {exc}{hint}", file=sys.stderr)
        return 2
    hook = integration.hook("cli_commands")
    commands = dict(hook()) if hook else {}
    parser = argparse.ArgumentParser(prog=f"sitegate {domain}",
                                     description=f"tools of the {integration.manifest.name} integration")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for name, cmd in commands.items():
        p = sub.add_parser(name, help=cmd.help)
        cmd.configure(p)
        p.set_defaults(_run=cmd.run)
    if not commands:
        print(f"error: integration {domain!r} adds no commands", file=sys.stderr)
        return 2
    args = parser.parse_args(rest)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    return int(args._run(args) or 0)
