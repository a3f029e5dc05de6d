"""`sitegate dlq list|show|replay|purge`: the dead-letter table of a site's WAL.

A sink that rejects a reading permanently (SinkError(permanent=True)) leaves
it here (dataplane/delivery.py). Replaying puts it back in the WAL for that
sink with its original sequence number, so its msgId is unchanged. Works while
the site runs (SQLite allows the second writer; the gateway picks replays up
within a few seconds).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import time
from pathlib import Path

from ..errors import SitegateError

_WHERE_HELP = "dead letters to act on: ids (see `dlq list`), or --all / --sink"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dlq", help="dead letters: readings a sink rejected permanently (list, show, replay, purge)")
    verbs = p.add_subparsers(dest="dlq_verb", metavar="VERB")

    def common(v: argparse.ArgumentParser) -> None:
        v.add_argument("site", type=Path, nargs="?", help="the site file (its state folder holds the WAL)")
        v.add_argument("--db", type=Path, help="the WAL file itself (default: <state folder>/site.sqlite)")
        v.add_argument("--sink", help="only dead letters of this sink entry")

    v = verbs.add_parser("list", help="one line per dead letter: id, sink, device, seq, readings, when, error")
    common(v)
    v.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    v.set_defaults(func=cmd_list)
    v = verbs.add_parser("show", help="every reading of one dead letter, with its msgId")
    common(v)
    v.add_argument("id", type=int)
    v.set_defaults(func=cmd_show)
    for name, fn, text in (("replay", cmd_replay, "send dead letters to their sink again (same msgIds)"),
                           ("purge", cmd_purge, "delete dead letters for good")):
        v = verbs.add_parser(name, help=text)
        common(v)
        v.add_argument("ids", type=int, nargs="*", help=_WHERE_HELP)
        v.add_argument("--all", action="store_true", help="every dead letter (of --sink, if given)")
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
    conn = sqlite3.connect(str(path), timeout=30, isolation_level=None)
    try:
        conn.execute("SELECT 1 FROM dead_letters LIMIT 1")
    except sqlite3.Error as exc:
        raise SitegateError(f"{path}: not a sitegate WAL ({exc})") from None
    return conn, site_name


def _selection(args: argparse.Namespace) -> tuple[str, list]:
    clauses, params = [], []
    if getattr(args, "ids", None):
        clauses.append(f"id IN ({','.join('?' * len(args.ids))})")
        params.extend(args.ids)
    elif not getattr(args, "all", False) and not args.sink:
        raise SitegateError("say which dead letters: ids, --all, or --sink SINK")
    if args.sink:
        clauses.append("sink=?")
        params.append(args.sink)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


@_reporting
def cmd_list(args: argparse.Namespace) -> int:
    from ..dataplane.wal import PRIORITY_NAMES
    conn, _ = _db(args)
    where, params = ("WHERE sink=?", [args.sink]) if args.sink else ("", [])
    rows = conn.execute(f"SELECT id, sink, prio, device, seq, n, failed_at, error FROM dead_letters {where} "
                        "ORDER BY id", params).fetchall()
    if args.json:
        for r in rows:
            print(json.dumps({"id": r[0], "sink": r[1], "priority": PRIORITY_NAMES[r[2]], "device": r[3],
                              "seq": r[4], "readings": r[5], "failed_at": r[6], "error": r[7]}))
        return 0
    if not rows:
        print("no dead letters")
        return 0
    print(f"{'id':>6}  {'sink':<12} {'device':<20} {'seq':>8} {'n':>4}  {'failed at (UTC)':<19}  error")
    for r in rows:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r[6]))
        print(f"{r[0]:>6}  {r[1]:<12} {r[3]:<20} {r[4]:>8} {r[5]:>4}  {when:<19}  {r[7]}")
    print(f"{len(rows)} dead letter(s)")
    return 0


@_reporting
def cmd_show(args: argparse.Namespace) -> int:
    from ..dataplane.wal import PRIORITY_NAMES, batch_of
    from ..model import message_id
    conn, site = _db(args)
    row = conn.execute("SELECT id, sink, prio, device, seq, n, failed_at, error, body FROM dead_letters WHERE id=?",
                       (args.id,)).fetchone()
    if row is None:
        raise SitegateError(f"no dead letter with id {args.id}")
    b = batch_of(row[3], row[4], row[8])
    out = {"id": row[0], "sink": row[1], "priority": PRIORITY_NAMES[row[2]], "device": row[3], "error": row[7],
           "failed_at": row[6],
           "readings": [{"msgId": message_id(site or "<site>", b.device, b.seq + i), "seq": b.seq + i, "point": p,
                         "value": v, "ts": t, "quality": q} for i, (p, v, t, q) in enumerate(b.rows())]}
    print(json.dumps(out, indent=2, default=str))
    return 0


@_reporting
def cmd_replay(args: argparse.Namespace) -> int:
    conn, _ = _db(args)
    where, params = _selection(args)
    conn.execute("BEGIN IMMEDIATE")
    rows = conn.execute(f"SELECT id, sink, prio, device, seq, n, body FROM dead_letters{where} ORDER BY id",
                        params).fetchall()
    now = time.time()
    conn.executemany("INSERT INTO wal_records(prio, device, seq, n, targets, created, size, body) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                     [(r[2], r[3], r[4], r[5], f",{r[1]},", now, len(r[6]), r[6]) for r in rows])
    conn.executemany("DELETE FROM dead_letters WHERE id=?", [(r[0],) for r in rows])
    conn.execute("COMMIT")
    print(f"replayed {len(rows)} dead letter(s) ({sum(r[5] for r in rows)} readings)")
    return 0


@_reporting
def cmd_purge(args: argparse.Namespace) -> int:
    conn, _ = _db(args)
    where, params = _selection(args)
    n = conn.execute(f"DELETE FROM dead_letters{where}", params).rowcount
    print(f"purged {n} dead letter(s)")
    return 0
