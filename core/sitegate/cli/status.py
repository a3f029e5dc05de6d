"""`sitegate status SITE` and `sitegate diagnostics SITE [ENTRY|DEVICE]`: ask a running site.

Both find the running site through `runtime.json` in its state folder and
ask its local HTTP endpoint (/readyz, /metrics, /diagnostics).
"""

from __future__ import annotations

import argparse
import json
import os
import urllib.error
import urllib.request
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="is the running site ready? entries, readings, problems")
    p.add_argument("site", type=Path, help="the site file of the running site")
    p.add_argument("--json", action="store_true", help="print the raw /readyz document")
    p.set_defaults(func=status)
    d = sub.add_parser("diagnostics", help="a redacted diagnostics bundle (JSON) of the site, an entry or a device")
    d.add_argument("site", type=Path, help="the site file of the running site")
    d.add_argument("target", nargs="?", help="an entry id or device id (default: the whole site)")
    d.set_defaults(func=diagnostics)


def _endpoint(site: Path) -> str:
    from ..config import load_site
    from ..config.changes import state_dir_for
    state = state_dir_for(load_site(site))
    runtime = state / "runtime.json"
    if not runtime.exists():
        raise SystemExit(f"error: {site}: no running site found (no {runtime}); start it with `sitegate run {site}`")
    doc = json.loads(runtime.read_text())
    pid = doc.get("pid")
    try:
        os.kill(int(pid), 0)
    except (TypeError, ValueError, ProcessLookupError):
        raise SystemExit(f"error: {site}: the site that wrote {runtime} (pid {pid}) is not running") from None
    except PermissionError:
        pass
    if "metrics" not in doc:
        raise SystemExit(f"error: {site}: the running site has no local endpoint (observability.metrics is off)")
    return doc["metrics"]


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def status(args: argparse.Namespace) -> int:
    base = _endpoint(args.site)
    code, body = _get(base + "/readyz")
    doc = json.loads(body)
    if args.json:
        print(json.dumps(doc, indent=1))
        return 0 if code == 200 else 1
    print(f"site {doc['site']}: {doc['status'].upper()}")
    width = max((len(e) for e in doc["entries"]), default=0)
    for entry, state in doc["entries"].items():
        print(f"  {entry:<{width}}  {state}")
    _, metrics = _get(base + "/metrics")
    for line in metrics.decode().splitlines():
        if line.startswith(("sitegate_readings_in_total ", "sitegate_process_resident_bytes ")):
            name, value = line.split()
            label = "readings in" if "readings" in name else "memory"
            shown = f"{float(value):.0f}" if "readings" in name else f"{float(value) / 1e6:.0f} MB"
            print(f"  {label}: {shown}")
    for problem in doc.get("problems", []):
        print(f"  problem: {problem}")
    return 0 if code == 200 else 1


def diagnostics(args: argparse.Namespace) -> int:
    base = _endpoint(args.site)
    code, body = _get(base + "/diagnostics" + (f"/{args.target}" if args.target else ""))
    if code != 200:
        print(f"error: {json.loads(body).get('error', body.decode())}")
        return 1
    print(json.dumps(json.loads(body), indent=1))
    return 0
