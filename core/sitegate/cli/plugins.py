"""`sitegate plugins ...`: a site's installed plugins (install, upgrade, rollback, list).

Every verb goes through sitegate.registry.store: verified before anything is
written, atomic, the previous version kept, and recorded in the audit log.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError
from ..registry.errors import PluginRefused

if TYPE_CHECKING:  # pragma: no cover
    from ..registry.store import PluginStore

_SPEC = re.compile(r"^([a-z][a-z0-9_]*)\s*(.*)$")


def parse_requirement(text: str) -> tuple[str, str]:
    """`modbus`, `modbus==1.2.0`, `modbus>=1.2,<2` -> (domain, spec)."""
    match = _SPEC.match(text.strip())
    if not match:
        raise ValueError(f"{text!r}: expected DOMAIN or DOMAIN==VERSION (domain: lowercase letters, digits, _)")
    return match.group(1), match.group(2).strip()


def state_dir(args: argparse.Namespace) -> Path:
    """--state, else the state folder of --site (runtime.state_dir or .sitegate/ beside it), else ./.sitegate."""
    if args.state:
        return Path(args.state)
    if args.site:
        from ..config import load_site
        from ..config.changes import state_dir_for

        return state_dir_for(load_site(args.site))
    return Path(".sitegate")


def _store(args: argparse.Namespace) -> "PluginStore":
    from ..registry.store import PluginStore   # python-tuf's client: only for the verbs that need it
    return PluginStore(state_dir(args), Path(args.registry))


def _run(action) -> int:
    try:
        return action()
    except (PluginRefused, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:     # `sitegate plugins list | head`: the command line ends it quietly
        raise
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def cmd_install(args: argparse.Namespace) -> int:
    def go() -> int:
        domain, spec = parse_requirement(args.plugin)
        plugin = _store(args).install(domain, spec)
        print(f"installed {plugin.domain} {plugin.version} (publisher {plugin.publisher}) in {plugin.path}")
        return 0
    return _run(go)


def cmd_upgrade(args: argparse.Namespace) -> int:
    def go() -> int:
        domain, spec = parse_requirement(args.plugin)
        store = _store(args)
        before, _ = store.active(domain)
        plugin = store.upgrade(domain, spec)
        if plugin is None:
            print(f"{domain} {before.version} is the newest signed version matching {spec or 'any'}")
        else:
            print(f"upgraded {domain} {before.version if before else '-'} -> {plugin.version} "
                  f"(`sitegate plugins rollback {domain}` goes back)")
        return 0
    return _run(go)


def cmd_rollback(args: argparse.Namespace) -> int:
    def go() -> int:
        store = _store(args)
        before, _ = store.active(args.domain)
        plugin = store.rollback(args.domain)
        print(f"rolled back {args.domain} {before.version} -> {plugin.version}")
        return 0
    return _run(go)


def cmd_list(args: argparse.Namespace) -> int:
    def go() -> int:
        store = _store(args)
        domains = store.installed_domains()
        if not domains:
            print(f"no plugins installed in {state_dir(args)}")
            return 0
        status = 0
        print(f"{'plugin':20} {'version':12} {'previous':21} {'publisher':12} files")
        for domain in domains:
            current, previous = store.active(domain)
            note = "not checked (--verify re-hashes)"
            if args.verify:
                try:
                    store.verify_installed(domain)
                    note = "verified"
                except PluginRefused as exc:
                    note, status = f"REFUSED ({exc.check}): {exc.detail}", 1
            print(f"{domain:20} {current.version:12} previous {previous.version if previous else '-':12} "
                  f"{current.publisher:12} {note}")
        return status
    return _run(go)


def cmd_audit(args: argparse.Namespace) -> int:
    def go() -> int:
        entries = _store(args).audit.entries()
        if args.domain:
            entries = [e for e in entries if e.get("domain") == args.domain]
        for e in entries[-args.last:] if args.last else entries:
            if args.json:
                print(json.dumps(e, sort_keys=True))
                continue
            version = e.get("version", "")
            if e.get("from_version"):
                version = f"{e['from_version']} -> {version}"
            why = f" ({e.get('check')}): {e.get('detail', '')}" if e.get("result") == "refused" else ""
            print(f"{e['at']}  {e['who']:20} {e['action']:9} {e['domain']:16} {version:16} {e['result']}{why}")
        return 0
    return _run(go)


def cmd_trust(args: argparse.Namespace) -> int:
    def go() -> int:
        root = Path(args.root)
        if not root.is_file():
            raise ConfigError(f"{root}: {'not a file' if root.exists() else 'no such file'}; give the registry's "
                              f"1.root.json (REGISTRY/metadata/1.root.json), obtained through a channel you trust")
        summary = _store(args).pin_root(root.read_bytes(), replace=args.replace)
        print(f"pinned {summary} from {args.root}")
        return 0
    return _run(go)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("plugins", help="site: install, upgrade, rollback, list verified plugins")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)

    def verb(name: str, func, help: str) -> argparse.ArgumentParser:
        p = verbs.add_parser(name, help=help, description=help)
        p.add_argument("--registry", default="registry", help="registry folder (default: registry)")
        p.add_argument("--site", default=None, help="site file: its state folder is used (runtime.state_dir)")
        p.add_argument("--state", default=None, help="the site's state folder (default: the --site's, else .sitegate)")
        p.set_defaults(func=func)
        return p

    verb("install", cmd_install, "verify and install DOMAIN[==VERSION] (or a range: 'modbus>=1.2,<2')") \
        .add_argument("plugin")
    verb("upgrade", cmd_upgrade, "install the newest signed version (matching a range, if given); keeps the old") \
        .add_argument("plugin")
    verb("rollback", cmd_rollback, "switch back to the previous installed version").add_argument("domain")
    verb("list", cmd_list, "installed plugins with current and previous versions") \
        .add_argument("--verify", action="store_true", help="re-hash every install against signed metadata")
    p = verb("audit", cmd_audit, "who installed, upgraded, rolled back or was refused what, and when")
    p.add_argument("domain", nargs="?", default=None, help="only this plugin")
    p.add_argument("--last", type=int, default=0, help="only the last N entries")
    p.add_argument("--json", action="store_true", help="one JSON object per line, as stored")
    p = verb("trust", cmd_trust, "pin the registry's root metadata (copied out of band) instead of trusting on first use")
    p.add_argument("root", help="the registry's 1.root.json, obtained through a channel you trust")
    p.add_argument("--replace", action="store_true", help="forget the current trust state and pin this root")
