"""`sitegate rollout start|status|pause|resume|abort`: staged updates of field devices.

The CLI writes into the site's rollout state (<state_dir>/updates.sqlite); the
running site's engine picks requests up within a second (sitegate.updates).
`start` records a rollout that the engine plans and runs; nothing here talks to
devices, so the commands work the same whether the site is up or not.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ..errors import SitegateError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("rollout", help="staged firmware/config updates of devices (start, status, pause, resume, abort)")
    verbs = p.add_subparsers(dest="rollout_verb", metavar="VERB")

    def where(v: argparse.ArgumentParser) -> None:
        v.add_argument("site", type=Path, nargs="?", help="the site file (its state folder holds the rollouts)")
        v.add_argument("--state", type=Path, help="the state folder itself (instead of the site file)")

    v = verbs.add_parser("start", help="roll a signed update out to devices in waves")
    where(v)
    src = v.add_mutually_exclusive_group(required=True)
    src.add_argument("--artifact", type=Path, help="NAME-VERSION.update.json (payload .bin beside it)")
    src.add_argument("--target", help="an update in the signed registry: plugins/PUBLISHER/update-NAME-VERSION.bin")
    v.add_argument("--registry", type=Path, default=Path("registry"), help="the signed registry (with --target)")
    v.add_argument("--entry", required=True, help="the update handler entry that reaches the devices")
    v.add_argument("--id", help="rollout id (default: NAME-VERSION-xxxxxx)")
    v.add_argument("--devices", help="comma-separated device ids (default: every device whose hardware fits)")
    v.add_argument("--hardware", help="comma-separated hardware ids to limit the rollout to")
    v.add_argument("--waves", default="1,10,50,100", help="cumulative percentages per wave (default 1,10,50,100)")
    v.add_argument("--canary-per-hardware", type=int, default=1, help="devices of each hardware id in the first wave")
    v.add_argument("--soak", type=float, default=300.0, help="seconds to wait after each wave (default 300)")
    v.add_argument("--device-timeout", type=float, default=600.0, help="seconds per device, stage to commit")
    v.add_argument("--health-window", type=float, default=30.0, help="seconds a device has to report healthy")
    v.add_argument("--max-concurrent", type=int, default=50, help="devices updating at once (default 50)")
    v.add_argument("--abort-types", default="failed,refused,timed_out", help="failure types the abort counts")
    v.add_argument("--abort-threshold", type=float, default=10.0, help="abort at this %% of executed devices")
    v.add_argument("--abort-min", type=int, default=1, help="...once at least this many devices executed")
    v.set_defaults(func=_reporting(cmd_start))
    v = verbs.add_parser("status", help="state, wave, counts and failed devices of rollouts")
    where(v)
    v.add_argument("id", nargs="?", help="one rollout (default: all)")
    v.add_argument("--json", action="store_true", help="JSON instead of text")
    v.add_argument("--audit", action="store_true", help="also print the rollout's audit log")
    v.set_defaults(func=_reporting(cmd_status))
    for name, text in (("pause", "stop starting devices (running ones finish)"),
                       ("resume", "continue a paused rollout (also after an automatic abort)"),
                       ("abort", "end a rollout for good (devices that failed were already rolled back)")):
        v = verbs.add_parser(name, help=text)
        where(v)
        v.add_argument("id")
        v.set_defaults(func=_reporting(cmd_request), verb=name)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _reporting(fn):
    from ..updates import UpdateError

    def run(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except (SitegateError, ValueError, UpdateError) as exc:
            print(f"error: {exc}")
            return 1
    run.__name__ = fn.__name__
    return run


def _store(args: argparse.Namespace):
    from ..updates.store import RolloutStore
    if args.state:
        return RolloutStore(args.state)
    if not args.site:
        raise SitegateError("give the site file (or --state DIR)")
    from ..config import load_site
    from ..config.changes import state_dir_for
    loaded = load_site(args.site)
    return RolloutStore(state_dir_for(loaded), durability=loaded.site.durability)


def _list(text: str | None) -> list[str] | None:
    return [x.strip() for x in text.split(",") if x.strip()] if text else None


def cmd_start(args: argparse.Namespace) -> int:
    from ..updates import UpdateArtifact
    from ..updates.policy import AbortCriteria, RolloutPolicy
    from ..updates.rollout import create_rollout
    try:
        waves = tuple(float(w) for w in args.waves.split(","))
    except ValueError:
        raise SitegateError(f"--waves: expected comma-separated percentages such as 1,10,50,100, got {args.waves!r}") from None
    policy = RolloutPolicy(waves=waves, canary_per_hardware=args.canary_per_hardware, soak=args.soak,
                           device_timeout=args.device_timeout, health_window=args.health_window,
                           max_concurrent=args.max_concurrent,
                           abort=(AbortCriteria(tuple(_list(args.abort_types) or ()), args.abort_threshold,
                                                args.abort_min),))
    store = _store(args)
    if args.target:
        # Through TUF, with the site's own trust state (the root it pinned for plugins).
        from ..registry.client import TrustedIndex
        from ..registry.updates import fetch_update
        artifact = fetch_update(TrustedIndex(args.registry, store.dir / "plugins" / "trust"), args.target)
    else:
        artifact = UpdateArtifact.load(args.artifact)
    rid = create_rollout(store, args.entry, artifact, policy=policy, devices=_list(args.devices),
                         hardware=_list(args.hardware), rollout_id=args.id)
    m = artifact.manifest
    print(f"rollout {rid}: {m.name} {m.version} via {args.entry}, waves {args.waves} %, soak {args.soak:g} s; "
          "the running site starts it within a second (`sitegate rollout status` to follow)")
    return 0


def _ago(ts: float | None) -> str:
    if not ts:
        return ""
    delta = ts - time.time()
    return f"in {delta:.0f} s" if delta > 0 else f"{-delta:.0f} s ago"


def cmd_status(args: argparse.Namespace) -> int:
    from ..updates.rollout import describe
    if args.state and args.site and args.id is None:
        args.id, args.site = str(args.site), None   # `status ID --state DIR`: the one positional is the id
    store = _store(args)
    rows = [store.get(args.id)] if args.id else store.list()
    if args.id and rows[0] is None:
        raise SitegateError(f"no rollout {args.id!r}")
    out = [describe(store, r) for r in rows]
    if args.json:
        for d in out:
            if args.audit:
                d["audit"] = store.audit_log(d["id"])
            print(json.dumps(d, sort_keys=True))
        return 0
    if not out:
        print("no rollouts")
    for d in out:
        wave = f"wave {d['wave'] + 1}/{d['waves']}" if d["waves"] else "not planned yet"
        soak = f", next wave {_ago(d['soak_until'])}" if d["soak_until"] and d["state"] == "running" else ""
        print(f"{d['id']}  {d['update']} ({d['kind']}) via {d['entry']}: {d['state'].upper()}, {wave}{soak}")
        print(f"  {d['succeeded']}/{d['total']} updated, {d['failed']} failed ({d['rolled_back']} rolled back), "
              f"{d['in_progress']} in progress, {d['pending']} pending")
        if d["reason"]:
            print(f"  reason: {d['reason']}")
        for f in d["failed_devices"][:20]:
            print(f"  ! {f['device']}: {f['failure']} at {f['step']} ({f['status']}): {f['detail']}")
        if len(d["failed_devices"]) > 20:
            print(f"  ... and {len(d['failed_devices']) - 20} more (--json for all)")
        if args.audit:
            for a in store.audit_log(d["id"]):
                when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(a["at"]))
                print(f"  {when}Z {a['who']} {a['action']} {a['device'] or ''} {a['detail']}".rstrip())
    return 0


def cmd_request(args: argparse.Namespace) -> int:
    store = _store(args)
    state = store.request(args.id, args.verb)
    print(f"rollout {args.id}: {state}" + (" (the running site acts on it within a second)" if state != "aborted" else
                                          " (running devices finish; nothing new starts)"))
    return 0
