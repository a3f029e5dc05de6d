"""`sitegate dlq list|show|replay|purge`: the dead-letter table of a site's WAL.

Two kinds of dead letters. `sink`: a sink rejected readings permanently
(SinkError(permanent=True), dataplane/delivery.py); replaying puts them back in
the WAL for that sink with their original sequence numbers, so their msgIds are
unchanged. `ingress`: an adapter received a message it could not decode
(EntryContext.dead_letter); the raw payload is kept with its topic and error,
`show` prints it. Replaying them (after fixing the adapter's payload mapping)
marks them in the file; the running site hands each to the entry that stored
it, which decodes it again with its current mapping (EntryContext.on_redecode)
and publishes the readings as if they had just arrived at their receive time:
decoded ones are deleted once their readings are committed, ones that still
fail stay with the new error and an attempt count, and ones whose entry is not
running (or cannot decode again) stay as they are with a note saying why.
`replay` waits for that (`--wait`, 10 s) and reports it. All of this works
while the site runs (SQLite allows the second writer; the gateway picks
replays up within a few seconds); ingress replays asked for while the site is
stopped are done when it next runs.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import time
from pathlib import Path

from ..errors import SitegateError

_WHERE_HELP = "dead letters to act on: ids (see `dlq list`), or --all / --sink / --kind"
KINDS = ("sink", "ingress")         # dataplane.deadletters.KINDS (imported lazily: the CLI starts fast)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dlq", help="dead letters: readings a sink rejected permanently, payloads an adapter could "
                                   "not decode (list, show, replay, purge)")
    verbs = p.add_subparsers(dest="dlq_verb", metavar="VERB")

    def common(v: argparse.ArgumentParser) -> None:
        v.add_argument("site", type=Path, nargs="?", help="the site file (its state folder holds the WAL)")
        v.add_argument("--db", type=Path, help="the WAL file itself (default: <state folder>/site.sqlite)")
        v.add_argument("--sink", "--entry", dest="sink",
                       help="only dead letters of this entry (the sink, or the adapter of ingress ones)")
        v.add_argument("--kind", choices=KINDS, help="only sink dead letters or only ingress ones")

    v = verbs.add_parser("list", help="one line per dead letter: id, kind, entry, device or topic, seq, readings, "
                                      "when, error")
    common(v)
    v.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    v.set_defaults(func=cmd_list)
    v = verbs.add_parser("show", help="every reading of one dead letter, with its msgId (ingress: its payload)")
    common(v)
    v.add_argument("id", type=int)
    v.set_defaults(func=cmd_show)
    for name, fn, text in (("replay", cmd_replay, "send sink dead letters to their sink again (same msgIds); "
                                                  "decode ingress ones again with their adapter's current mapping "
                                                  "(the site must run)"),
                           ("purge", cmd_purge, "delete dead letters for good")):
        v = verbs.add_parser(name, help=text)
        common(v)
        v.add_argument("ids", type=int, nargs="*", help=_WHERE_HELP)
        v.add_argument("--all", action="store_true", help="every dead letter (of --sink, if given)")
        if name == "replay":
            v.add_argument("--wait", type=float, default=10.0, metavar="SECONDS",
                           help="ingress: wait this long for the running site to decode them and report what "
                                "happened (default 10; 0: only ask)")
        v.set_defaults(func=fn)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _reporting(fn):
    # Bad input is a message naming what and where, not a traceback.
    def run(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except SitegateError as exc:
            print(f"error: {exc}")
            return 1
    run.__name__ = fn.__name__
    return run


def _db(args: argparse.Namespace) -> tuple[sqlite3.Connection, str]:
    """The WAL connection and the site name (for msgIds)."""
    site_name = ""
    if args.db:
        path = Path(args.db)
    elif args.site:
        from ..config import load_site
        from ..config.changes import state_dir_for
        from ..dataplane.plane import WAL_FILE
        loaded = load_site(args.site)
        site_name = loaded.site.site
        path = state_dir_for(loaded) / WAL_FILE
    else:
        raise SitegateError("give the site file (or --db PATH of the WAL)")
    if not path.is_file():
        raise SitegateError(f"{path}: no WAL here (has the site run yet?)")
    from ..dataplane.wal import migrate
    conn = sqlite3.connect(str(path), timeout=30, isolation_level=None)
    try:
        conn.execute("SELECT 1 FROM dead_letters LIMIT 1")
        migrate(conn)          # a file written before ingress dead letters existed
    except sqlite3.Error as exc:
        raise SitegateError(f"{path}: not a sitegate WAL ({exc})") from None
    return conn, site_name


def _selection(args: argparse.Namespace, *, require: bool = True):
    from ..dataplane.deadletters import Selection
    if args.db and args.site is not None and str(args.site).isdigit() and hasattr(args, "ids"):
        args.ids = [int(str(args.site)), *args.ids]      # `--db FILE 3 4`: the first id is no site file
        args.site = None
    if require and not getattr(args, "ids", None) and not getattr(args, "all", False) and not args.sink \
            and not args.kind:
        raise SitegateError("say which dead letters: ids, --all, --sink ENTRY or --kind KIND")
    return Selection(tuple(getattr(args, "ids", None) or ()), args.sink, args.kind, bool(getattr(args, "all", False)))


@_reporting
def cmd_list(args: argparse.Namespace) -> int:
    from ..dataplane.deadletters import list_dead_letters
    conn, _ = _db(args)
    rows = list_dead_letters(conn, _selection(args, require=False))
    if args.json:
        for r in rows:
            print(json.dumps(r))
        return 0
    if not rows:
        print("no dead letters")
        return 0
    print(f"{'id':>6}  {'kind':<7} {'entry':<12} {'device / topic':<24} {'seq':>8} {'n':>4}  "
          f"{'failed at (UTC)':<19}  error")
    for r in rows:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r["failed_at"]))
        if r["kind"] == "ingress":
            print(f"{r['id']:>6}  {'ingress':<7} {r['entry']:<12} {r['source']:<24} {'-':>8} {'-':>4}  {when:<19}  "
                  f"{r['error']}" + _replay_state(r["attempts"], r["replay_requested"], r["note"]))
        else:
            print(f"{r['id']:>6}  {r['kind']:<7} {r['entry']:<12} {r['device']:<24} {r['seq']:>8} {r['readings']:>4}  "
                  f"{when:<19}  {r['error']}")
    kinds = {k: sum(1 for r in rows if r["kind"] == k) for k in KINDS}
    print(f"{len(rows)} dead letter(s): {kinds['sink']} sink, {kinds['ingress']} ingress")
    return 0


def _replay_state(attempts: int, requested: float | None, note: str | None) -> str:
    return ((f" [failed {attempts} replay(s)]" if attempts else "") + (" [replay asked for]" if requested else "")
            + (f" [not replayed: {note}]" if note else ""))


@_reporting
def cmd_show(args: argparse.Namespace) -> int:
    from ..dataplane.deadletters import show_dead_letter
    conn, site = _db(args)
    print(json.dumps(show_dead_letter(conn, args.id, site), indent=2, default=str))
    return 0


@_reporting
def cmd_replay(args: argparse.Namespace) -> int:
    from ..dataplane.deadletters import replay_dead_letters
    conn, _ = _db(args)
    done = replay_dead_letters(conn, _selection(args), time.time())
    if done.records or not done.ingress:
        print(f"replayed {len(done.records)} sink dead letter(s) ({done.readings} readings)")
    return _ingress_outcome(conn, done.ingress, args.wait) if done.ingress else 0


def _ingress_outcome(conn: sqlite3.Connection, asked: list[int], wait: float) -> int:
    """Wait up to `wait` s for the running site to settle the asked-for ingress replays; report them."""
    from ..dataplane.deadletters import ingress_outcome
    deadline = time.monotonic() + max(0.0, wait)
    while True:
        out = ingress_outcome(conn, asked)
        if not out["pending"] or time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    if wait <= 0:
        print(f"asked the site to decode {len(asked)} ingress dead letter(s) again; `dlq list` shows how it went")
        return 0
    decoded = len(out["decoded"])
    print(f"ingress: {decoded} of {len(asked)} dead letter(s) decoded with the current mapping, their readings "
          "committed and the dead letters deleted")
    for i, error in out["failed"]:
        print(f"  {i}: still fails: {error}")
    for i, why in out["untried"]:
        print(f"  {i}: not replayed: {why}")
    if out["pending"]:
        print(f"  {len(out['pending'])} not done after {wait:g} s (is the site running?); they stay asked for and the "
              "site decodes them when it runs")
    return 0 if decoded == len(asked) else 1


@_reporting
def cmd_purge(args: argparse.Namespace) -> int:
    from ..dataplane.deadletters import purge_dead_letters
    conn, _ = _db(args)
    gone = purge_dead_letters(conn, _selection(args))
    print(f"purged {sum(gone.values())} dead letter(s)")
    return 0
