"""`sitegate run SITE`: run a site until stopped."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import trio

from ..errors import ConfigError, SitegateError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run a site until SIGINT/SIGTERM; edits to the site file apply live")
    p.add_argument("site", type=Path, help="the site file (YAML)")
    from .common import add_plugin_source_args
    add_plugin_source_args(p)
    p.add_argument("--log-level", default="INFO", type=str.upper, choices=("DEBUG", "INFO", "WARNING", "ERROR"),
                   help="DEBUG, INFO, WARNING or ERROR, in any case (default INFO)")
    p.add_argument("--log-json", action="store_true", help="log JSON lines instead of human-readable text")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from ..logs import setup_logging
    from ..runner import run_site
    from .common import plugin_source_from_args

    setup_logging(args.log_level, json_lines=args.log_json)
    try:
        source = plugin_source_from_args(args)
        clean = trio.run(run_site, args.site, source)
    except ConfigError as exc:
        for issue in exc.issues:
            print(f"error: {issue}")
        return 1
    except SitegateError as exc:
        print(f"error: {exc}")
        return 1
    except BaseExceptionGroup as group:     # a service that failed to start, inside the site's nursery
        known, other = group.split(SitegateError)
        if known is None or other is not None:
            raise
        for exc in _leaves(known):
            print(f"error: {exc}")
        return 1
    return 0 if clean else 3


def _leaves(group: BaseExceptionGroup) -> list[BaseException]:
    return [leaf for exc in group.exceptions
            for leaf in (_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])]
