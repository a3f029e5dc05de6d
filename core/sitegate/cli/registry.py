"""`sitegate registry ...`: the registry owner's verbs (init, publishers, keys, refresh, list, verify).

Thin argparse wrappers over sitegate.registry.repository; keys are read from a
folder (--keys) and matched to roles by keyid, so root keys can live on an
offline medium that is mounted only for the verbs that need them.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from ..errors import ConfigError
from ..registry.errors import PluginRefused
from ..registry.keys import (DEVELOPMENT_WARNING, NaclSigner, default_keys_dir, load_keyring, load_public_key,
                             write_key_pair)
from ..registry.repository import TOP_ROLES, RegistryError, Repository


def _keys_dir(args: argparse.Namespace) -> Path:
    if args.keys:
        return Path(args.keys)
    return default_keys_dir(Path(args.registry), development=getattr(args, "development", None))


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1


def cmd_init(args: argparse.Namespace) -> int:
    keys_dir = _keys_dir(args)
    prefix = "DEVELOPMENT-ONLY-" if args.development else ""
    try:
        signers = {f"root-{i + 1}": NaclSigner.generate(f"root-{i + 1}") for i in range(args.root_keys)}
        for role in ("targets", "snapshot", "timestamp"):
            signers[role] = NaclSigner.generate(role)
        for name, signer in signers.items():
            if (keys_dir / f"{prefix}{name}.key").exists():
                return _fail(f"{keys_dir / (prefix + name + '.key')} exists; refusing to overwrite a key")
        Repository.init(Path(args.registry), root=[s for n, s in signers.items() if n.startswith("root-")],
                        root_threshold=args.threshold or args.root_keys, targets=signers["targets"],
                        snapshot=signers["snapshot"], timestamp=signers["timestamp"])
        for name, signer in signers.items():
            write_key_pair(signer, keys_dir / f"{prefix}{name}.key", development=args.development)
    except RegistryError as exc:
        return _fail(str(exc))
    print(f"registry created in {args.registry}; keys written to {keys_dir}")
    if args.development:
        print(f"WARNING: {DEVELOPMENT_WARNING}")
    else:
        print("Move the root-*.key files to offline storage now; they are needed only to rotate keys "
              "or change publishers' trust (see docs/security.md).")
    return 0


def cmd_add_publisher(args: argparse.Namespace) -> int:
    try:
        key = load_public_key(Path(args.keyfile))
        Repository(Path(args.registry)).add_publisher(args.name, key, load_keyring(_keys_dir(args)),
                                                      replace=args.replace)
    except (RegistryError, ValueError) as exc:
        return _fail(str(exc))
    print(f"publisher {args.name!r} may now sign plugins/{args.name}/* with key {key.keyid[:12]}")
    return 0


def cmd_revoke_publisher(args: argparse.Namespace) -> int:
    try:
        Repository(Path(args.registry)).revoke_publisher(args.name, load_keyring(_keys_dir(args)))
    except (RegistryError, ValueError) as exc:
        return _fail(str(exc))
    print(f"publisher {args.name!r} revoked: sites refuse its plugins from their next start")
    return 0


def cmd_rotate_key(args: argparse.Namespace) -> int:
    keys_dir = _keys_dir(args)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    new = NaclSigner.generate(f"{args.role}-{stamp}")
    out = Path(args.new_key) if args.new_key else keys_dir / f"{args.role}-{stamp}.key"
    try:
        Repository(Path(args.registry)).rotate_key(args.role, new, load_keyring(keys_dir), old=args.old)
    except (RegistryError, ValueError) as exc:
        return _fail(str(exc))
    write_key_pair(new, out)
    print(f"{args.role} key rotated; new key {new.keyid[:12]} in {out}. Destroy the replaced key file.")
    return 0


def cmd_refresh(args: argparse.Namespace) -> int:
    try:
        version = Repository(Path(args.registry)).write_snapshot_and_timestamp(load_keyring(_keys_dir(args)))
    except (RegistryError, ValueError) as exc:
        return _fail(str(exc))
    print(f"snapshot and timestamp re-signed (timestamp version {version})")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    try:
        repo = Repository(Path(args.registry))
        plugins = repo.plugins()
        info = repo.describe()
    except RegistryError as exc:
        return _fail(str(exc))
    print(f"registry {args.registry}: root v{info['root_version']} (threshold {info['root_threshold']}), "
          f"timestamp v{info['timestamp_version']} expires {info['timestamp_expires']}")
    for name, role in info["roles"].items():
        print(f"role {name}: {role['threshold']} of {', '.join(k[:12] for k in role['keyids'])}")
    for name, pub in sorted(info["publishers"].items()):
        print(f"publisher {name}: {', '.join(pub['paths'])} keys {', '.join(k[:12] for k in pub['keyids'])}")
    for p in plugins:
        print(f"  {p.domain:20} {p.version:12} {','.join(p.kinds):24} {p.publisher:12} {p.sha256[:16]}")
    from ..registry.modules import published_modules
    for m in published_modules(repo):
        print(f"  module {m.publisher}/{m.name:13} {m.version:12} {'wasm':24} {m.publisher:12} {m.sha256[:16]}")
    return 0


def verify_registry(registry: Path, out=None) -> list[str]:
    """Check every signed plugin version as a brand-new site would: metadata, download, contents."""
    from ..registry.client import TrustedIndex
    from ..registry.store import verify_artifact

    out = out or sys.stdout
    problems = []
    repo = Repository(registry)
    plugins = repo.plugins()
    expires = repo.timestamp().signed.expires
    left = (expires - datetime.now(timezone.utc)).total_seconds() / 86400
    if left < 2:
        problems.append(f"timestamp expires {expires.isoformat()} ({left:.1f} days): run `sitegate registry refresh`")
    with tempfile.TemporaryDirectory(prefix="sitegate-verify-") as state:
        # A fresh trust folder pins the registry's own first root, as a new site does.
        index = TrustedIndex(registry, Path(state) / "trust")
        for i, plugin in enumerate(plugins, 1):
            try:
                info = index.targetinfo(plugin.domain, plugin.path)
                verify_artifact(plugin.domain, index.download(plugin.domain, info), info.custom or {}, plugin.path)
                print(f"[{i}/{len(plugins)}] ok  {plugin.domain} {plugin.version} ({plugin.publisher})", file=out)
            except PluginRefused as exc:
                problems.append(str(exc))
                print(f"[{i}/{len(plugins)}] BAD {exc}", file=out)
    from ..registry.modules import verify_modules
    problems += verify_modules(registry, out)
    return problems


def cmd_verify(args: argparse.Namespace) -> int:
    try:
        problems = verify_registry(Path(args.registry))
    except (RegistryError, ConfigError) as exc:
        return _fail(str(exc))
    print("registry verified" if not problems else f"{len(problems)} problem(s)")
    return 1 if problems else 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("registry", help="registry owner: keys, publishers, signed metadata")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)

    def verb(name: str, func, help: str) -> argparse.ArgumentParser:
        p = verbs.add_parser(name, help=help, description=help)
        p.add_argument("--registry", default="registry", help="registry folder (default: registry)")
        p.add_argument("--keys", default=None, help="folder holding the owner's keys (default: REGISTRY/keys if it "
                       "exists, as in development, else REGISTRY-keys beside it)")
        p.set_defaults(func=func)
        return p

    p = verb("init", cmd_init, "create root, targets, snapshot and timestamp keys and the first metadata")
    p.add_argument("--root-keys", type=int, default=1, help="how many root keys to create (default 1)")
    p.add_argument("--threshold", type=int, default=None, help="root signatures needed (default: all root keys)")
    p.add_argument("--development", action="store_true", help="mark keys as DEVELOPMENT-ONLY and keep them in "
                   "REGISTRY/keys (never for real sites)")
    p = verb("add-publisher", cmd_add_publisher, "delegate plugins/NAME/* to the publisher's public key")
    p.add_argument("name")
    p.add_argument("keyfile", help="the publisher's .pub file (from `sitegate plugin keygen`)")
    p.add_argument("--replace", action="store_true", help="replace (and so revoke) the publisher's current key")
    p = verb("revoke-publisher", cmd_revoke_publisher, "remove a publisher: its plugins are refused from then on")
    p.add_argument("name")
    p = verb("rotate-key", cmd_rotate_key, "replace the key of a top-level role (root, targets, snapshot, timestamp)")
    p.add_argument("role", choices=TOP_ROLES)
    p.add_argument("--new-key", default=None, help="where to write the new private key")
    p.add_argument("--old", default=None, metavar="KEYID", help="replace only this key (a keyid prefix, as shown by "
                   "`registry list`); default: all of the role's keys")
    verb("refresh", cmd_refresh, "re-sign snapshot and timestamp (run before the timestamp expires)")
    verb("list", cmd_list, "publishers and signed plugins")
    verb("verify", cmd_verify, "verify every plugin as a new site would")
