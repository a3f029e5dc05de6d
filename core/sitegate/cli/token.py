"""`sitegate token create|revoke|list SITE`: access tokens of the WebSocket API and dashboard.

Tokens live hashed in the site's state folder (api/tokens.py); a running site
closes the connections of a revoked token within a second.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("token", help="create, revoke or list access tokens of the WebSocket API and dashboard")
    verbs = p.add_subparsers(dest="token_command", metavar="VERB", required=True)

    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument("site", type=Path, help="the site file (its state folder holds the tokens)")
        q.add_argument("--state", type=Path, default=None, help="the state folder (default: the site's)")

    c = verbs.add_parser("create", help="create a token and print it (once: only its hash is kept)")
    common(c)
    c.add_argument("--role", required=True, choices=["viewer", "operator", "admin"],
                   help="viewer reads; operator also commands devices and reloads entries; admin also manages "
                        "plugins, rollouts and desired configs")
    c.add_argument("--name", default="", help="a name to recognise and revoke it by (default: <role>-<id>)")
    c.set_defaults(func=_create)

    r = verbs.add_parser("revoke", help="revoke a token by id or name; open connections using it are closed")
    common(r)
    r.add_argument("which", help="the token's id or name (see `sitegate token list`)")
    r.set_defaults(func=_revoke)

    ls = verbs.add_parser("list", help="list tokens (ids, names, roles; never the tokens themselves)")
    common(ls)
    ls.set_defaults(func=_list)


def _store(args: argparse.Namespace):
    from ..api.tokens import TokenStore
    if args.state is not None:
        return TokenStore(args.state)
    from ..config import load_site
    from ..config.changes import state_dir_for
    return TokenStore(state_dir_for(load_site(args.site)))


def _create(args: argparse.Namespace) -> int:
    store = _store(args)
    same = [t.id for t in store.list() if args.name and t.name == args.name and not t.revoked]
    token, info = store.create(args.role, args.name)
    print(token)
    print(f"# id {info.id}, name {info.name}, role {info.role}; shown once, store it now", flush=True)
    if same:    # names are what `token revoke` takes: say that this one is not alone
        print(f"note: active token(s) {', '.join(same)} have the name {args.name!r} too; `sitegate token revoke "
              f"{args.site} {args.name}` revokes them all, an id only that one", file=sys.stderr)
    return 0


def _revoke(args: argparse.Namespace) -> int:
    revoked = _store(args).revoke(args.which)
    if not revoked:
        print(f"error: no active token with id or name {args.which!r}; see `sitegate token list {args.site}`")
        return 1
    for t in revoked:
        print(f"revoked {t.id} ({t.name}, {t.role})")
    return 0


def _list(args: argparse.Namespace) -> int:
    for t in _store(args).list():
        when = datetime.datetime.fromtimestamp(t.created_at, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")
        state = "revoked" if t.revoked else "active"
        print(f"{t.id}  {t.role:<8}  {state:<7}  {when}Z  {t.name}")
    return 0
