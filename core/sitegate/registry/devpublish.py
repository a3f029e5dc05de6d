"""Build, sign and publish every first-party plugin into a local registry with DEVELOPMENT keys.

    python -m sitegate.registry.devpublish plugins/ registry/

Creates the registry on first use from the committed registry/keys/DEVELOPMENT-ONLY-*
keys (generating them if absent), then publishes each plugins/<domain>/ as
publisher `sitegate`. Idempotent: unchanged plugins are not re-signed. The keys
are public, so a registry made this way proves nothing to anyone but a developer.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import ConfigError
from .artifact import build_artifact
from .keys import DEVELOPMENT_WARNING, NaclSigner, load_private_key, write_key_pair
from .repository import RegistryError, Repository

PUBLISHER = "sitegate"
PREFIX = "DEVELOPMENT-ONLY-"
OWNER_KEYS = ("root", "targets", "snapshot", "timestamp")
# A demo registry nobody re-signs must not expire under a developer within a week.
DEV_EXPIRY_DAYS = {"root": 3650, "targets": 3650, "snapshot": 365, "timestamp": 365, "publisher": 3650}


def development_keys(keys_dir: Path) -> dict[str, NaclSigner]:
    """The development keys by role name (and 'publisher'), created once if missing."""
    names = [*OWNER_KEYS, f"publisher-{PUBLISHER}"]
    keys = {}
    for name in names:
        path = keys_dir / f"{PREFIX}{name}.key"
        if not path.exists():
            write_key_pair(NaclSigner.generate(f"{PREFIX}{name}"), path, development=True)
        keys[name.split("-")[0]] = load_private_key(path)
    return keys


def devpublish(plugins_dir: Path, registry_dir: Path, *, out=None) -> list[str]:
    """Publish every plugin folder; returns the problems (empty when all went in)."""
    out = out or sys.stdout
    print(f"WARNING: {DEVELOPMENT_WARNING}", file=out)
    keys = development_keys(registry_dir / "keys")
    repo = Repository(registry_dir, expiry_days=DEV_EXPIRY_DAYS)
    if not repo.exists():
        repo = Repository.init(registry_dir, root=[keys["root"]], root_threshold=1, targets=keys["targets"],
                               snapshot=keys["snapshot"], timestamp=keys["timestamp"],
                               expiry_days=DEV_EXPIRY_DAYS)
        print(f"created development registry in {registry_dir}", file=out)
    ring = {s.keyid: s for s in keys.values()}
    publisher = repo.publishers().get(PUBLISHER)
    if publisher is None or keys["publisher"].keyid not in publisher.keyids:
        repo.add_publisher(PUBLISHER, keys["publisher"].public_key, ring, replace=publisher is not None)
    online = {keys[r].keyid: keys[r] for r in ("snapshot", "timestamp")}
    folders = sorted(p for p in Path(plugins_dir).iterdir() if (p / "manifest.json").is_file())
    problems = []
    for i, folder in enumerate(folders, 1):
        try:
            manifest, data = build_artifact(folder)
            plugin, changed = repo.publish(data, keys["publisher"], online, replace=True)
        except (ConfigError, RegistryError) as exc:
            problems.append(f"{folder}: {exc}")
            print(f"[{i}/{len(folders)}] FAILED {folder.name}: {exc}", file=out)
            continue
        state = "published" if changed else "unchanged"
        print(f"[{i}/{len(folders)}] {state:9} {plugin.domain} {plugin.version}", file=out)
    # Keep a registry usable for a year even if nothing changed since it was made.
    if repo.timestamp().signed.expires.timestamp() - __import__("time").time() < 30 * 86400:
        repo.write_snapshot_and_timestamp(online)
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sitegate.registry.devpublish", description=__doc__.splitlines()[0])
    parser.add_argument("plugins", nargs="?", default="plugins", help="folder of plugin folders (default: plugins)")
    parser.add_argument("registry", nargs="?", default="registry", help="registry folder (default: registry)")
    args = parser.parse_args(argv)
    problems = devpublish(Path(args.plugins), Path(args.registry))
    if problems:
        print(f"{len(problems)} plugin(s) not published", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
