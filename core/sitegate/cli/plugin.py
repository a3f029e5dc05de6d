"""`sitegate plugin ...`: the plugin author's verbs (keygen, build, publish; `new` plugs in here).

build makes the reproducible artifact (registry/artifact.py); publish signs it
with the publisher's key into a registry folder (registry/repository.py).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from ..errors import ConfigError
from ..registry.artifact import artifact_name, build_artifact, sha256
from ..registry.keys import NaclSigner, default_keys_dir, load_keyring, load_private_key, write_key_pair
from ..registry.repository import ONLINE_ROLES, RegistryError, Repository


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1


def cmd_keygen(args: argparse.Namespace) -> int:
    out = Path(args.out or f"{args.name}.key")
    if out.exists():
        return _fail(f"{out} exists; refusing to overwrite a key")
    signer = NaclSigner.generate(args.name)
    public = write_key_pair(signer, out)
    print(f"private key: {out} (keep it secret; mode 0600)\npublic key:  {public} "
          f"(send it to the registry owner: `sitegate registry add-publisher {args.name} {public.name}`)")
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    folder = Path(args.folder)
    if not folder.is_dir():
        return _fail(f"{folder}: {'not a folder' if folder.exists() else 'no such folder'} ({folder.absolute()}); "
                     f"give the integration's folder, the one holding manifest.json")
    try:
        manifest, data = build_artifact(folder)
    except ConfigError as exc:
        return _fail(str(exc))
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / artifact_name(manifest.domain, manifest.version)
    out.write_bytes(data)
    print(f"{out}  {len(data)} bytes  sha256 {sha256(data)}")
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    registry = Path(args.registry)
    try:
        signer = load_private_key(Path(args.key))
        online_dir = Path(args.online_keys) if args.online_keys else default_keys_dir(registry)
        repo = Repository(registry)
        root = repo.root().signed
        online_ids = {k for role in ONLINE_ROLES for k in root.roles[role].keyids}
        keyring = {k: s for k, s in load_keyring(online_dir).items() if k in online_ids}
        artifact = Path(args.artifact)
        if artifact.is_dir():
            _, data = build_artifact(artifact)
        else:
            data = artifact.read_bytes()
        plugin, changed = repo.publish(data, signer, keyring, replace=args.replace)
    except (RegistryError, ValueError, ConfigError, OSError) as exc:
        return _fail(str(exc))
    state = "published" if changed else "already published (unchanged)"
    print(f"{plugin.domain} {plugin.version} {state} as {plugin.path} by {plugin.publisher}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("plugin", help="plugin authors: new, keygen, build, publish")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)

    p = verbs.add_parser("keygen", help="create a publisher key pair (NAME.key and NAME.pub)")
    p.add_argument("--name", default="publisher", help="publisher name recorded in the key (default: publisher)")
    p.add_argument("--out", default=None, help="private key path (default: NAME.key)")
    p.set_defaults(func=cmd_keygen)

    p = verbs.add_parser("build", help="zip an integration folder into its reproducible artifact, DOMAIN-VERSION.zip")
    p.add_argument("folder", help="the integration's folder (the one holding manifest.json), e.g. acme_meter")
    p.add_argument("--out", default="dist", help="output folder (default: dist)")
    p.set_defaults(func=cmd_build)

    p = verbs.add_parser("publish", help="sign an artifact (or a plugin folder) into a registry as its publisher")
    p.add_argument("artifact", help="artifact .zip from `sitegate plugin build`, or a plugin folder")
    p.add_argument("--key", required=True, help="the publisher's private key file")
    p.add_argument("--registry", default="registry", help="registry folder (default: registry)")
    p.add_argument("--online-keys", default=None,
                   help="folder with the registry's snapshot/timestamp keys (default: REGISTRY/keys or REGISTRY-keys)")
    p.add_argument("--replace", action="store_true", help="re-sign a version already published with other bytes "
                   "(development only: published versions should be immutable)")
    p.set_defaults(func=cmd_publish)

    # `sitegate plugin new` (scaffolding) lives in its own module and adds itself when present.
    try:
        extra = importlib.import_module("sitegate.cli.plugin_new")
    except ModuleNotFoundError as exc:
        if exc.name != "sitegate.cli.plugin_new":
            raise
    else:
        extra.register_verb(verbs)
