"""A third-party plugin from source to a running site, in one command:

    python examples/third_party/run.py            # Ctrl-C stops the site

Tests ACME's plugin, makes a registry (DEVELOPMENT keys) holding the first-party plugins, creates
the publisher key `acme`, has the registry owner delegate `plugins/acme/*` to it, builds, signs and
publishes the plugin, then runs site.yaml from the registry: every plugin verified, none from folders.
Each step prints the `sitegate` command an author or registry owner would type.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
PLUGIN = HERE / "acme_fahrenheit"
PUBLISHER = "acme"


def sitegate(*argv: str) -> None:
    """Run one sitegate command as a user would (a fresh process), stopping at the first failure."""
    print(f"$ sitegate {' '.join(argv)}", flush=True)
    done = subprocess.run([sys.executable, "-m", "sitegate.cli", *argv])
    if done.returncode != 0:
        sys.exit(f"step failed (exit {done.returncode}): sitegate {' '.join(argv)}")


def prepare(work: Path, plugin: Path, *, run_tests: bool = True) -> dict[str, Path]:
    """Everything before `sitegate run`; returns the paths the run needs."""
    if work.exists():
        shutil.rmtree(work)     # a fresh registry each time: a site's trust never sees a "rollback"
    work.mkdir(parents=True)
    registry, state, dist = work / "registry", work / "state", work / "dist"
    key = work / f"{PUBLISHER}.key"

    if run_tests:
        print(f"$ python -m pytest {plugin.name}/tests", flush=True)
        if subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(plugin / "tests")],
                          cwd=plugin.parent).returncode != 0:
            sys.exit(f"{plugin.name}'s own tests failed")

    print("# the registry owner: a registry with the first-party plugins (DEVELOPMENT keys, never in the field)")
    print(f"$ python -m sitegate.registry.devpublish plugins {registry}", flush=True)
    if subprocess.run([sys.executable, "-m", "sitegate.registry.devpublish", str(REPO / "plugins"), str(registry)],
                      stdout=subprocess.DEVNULL).returncode != 0:
        sys.exit("publishing the first-party plugins failed")

    print("# ACME, once: its own publisher key; the public half goes to the registry owner")
    sitegate("plugin", "keygen", "--name", PUBLISHER, "--out", str(key))
    print(f"# the registry owner delegates plugins/{PUBLISHER}/* to that key")
    sitegate("registry", "add-publisher", PUBLISHER, str(key.with_suffix(".pub")), "--registry", str(registry))
    print("# ACME: build the reproducible artifact and sign it into the registry")
    sitegate("plugin", "build", str(plugin), "--out", str(dist))
    manifest = json.loads((plugin / "manifest.json").read_text())
    artifact = dist / f"{manifest['domain']}-{manifest['version']}.zip"
    sitegate("plugin", "publish", str(artifact), "--key", str(key), "--registry", str(registry))
    print("# the site: install what site.yaml pins, verified against the registry")
    sitegate("plugins", "install", f"{manifest['domain']}=={manifest['version']}", "--registry", str(registry),
             "--state", str(state))
    return {"registry": registry, "state": state}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=HERE / ".sitegate" / "publish",
                        help="scratch folder for keys, registry and installed plugins, emptied first "
                             "(default: examples/third_party/.sitegate/publish)")
    parser.add_argument("--site", type=Path, default=HERE / "site.yaml", help="the site to run (default: site.yaml)")
    parser.add_argument("--plugin", type=Path, default=PLUGIN, help="the plugin folder to publish (default: acme_fahrenheit)")
    parser.add_argument("--no-run", action="store_true", help="stop after publishing; do not run the site")
    parser.add_argument("--skip-tests", action="store_true", help="do not run the plugin's own tests first")
    args = parser.parse_args(argv)

    paths = prepare(args.work.resolve(), args.plugin.resolve(), run_tests=not args.skip_tests)
    if args.no_run:
        return 0
    run = ["run", str(args.site), "--registry", str(paths["registry"]), "--state", str(paths["state"])]
    print(f"$ sitegate {' '.join(run)}", flush=True)
    # exec: Ctrl-C and SIGTERM reach `sitegate run` itself, which shuts down gracefully.
    os.execv(sys.executable, [sys.executable, "-m", "sitegate.cli", *run])
    return 0  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())
