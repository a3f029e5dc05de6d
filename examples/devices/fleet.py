"""A fleet of simulated sensor nodes in one trio process, and its command line.

    python -m examples.devices --gateway 127.0.0.1:1885 --count 200 --trust KEYHEX \\
        [--hw th-v1,th-v2] [--fail-health n3,n7] [--offline n9] [--power-loss n4:0.5]

Node ids are n0000, n0001, ...; hardware ids go round-robin over --hw.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path

import nacl.signing
import trio

from .node import Node


def trusted_keys(hex_keys: list[str]) -> dict[str, nacl.signing.VerifyKey]:
    """keyid -> key, with the key id computed the way TUF does (sha256 of the canonical key JSON)."""
    import hashlib
    out = {}
    for text in hex_keys:
        key = nacl.signing.VerifyKey(bytes.fromhex(text))
        keyval = {"keytype": "ed25519", "scheme": "ed25519", "keyval": {"public": text}}
        keyid = hashlib.sha256(json.dumps(keyval, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
        out[keyid] = key
    return out


def node_id(i: int) -> str:
    return f"n{i:04d}"


class Fleet:
    def __init__(self, count: int, gateway: tuple[str, int], trust: list[str], *, hardware: list[str] | None = None,
                 version: str = "1.0.0", counter: int = 1, **node_kw):
        hardware = hardware or ["th-v1"]
        keys = trusted_keys(trust)
        self.nodes = {node_id(i): Node(node_id(i), hardware[i % len(hardware)], keys, gateway, version=version,
                                       counter=counter, **node_kw) for i in range(count)}

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            for node in self.nodes.values():
                await nursery.start(node.run)
            task_status.started(self)

    def summary(self) -> dict:
        versions: dict[str, int] = {}
        for n in self.nodes.values():
            v = n.slots["firmware"].active["version"]
            versions[v] = versions.get(v, 0) + 1
        return {"versions": versions, "touched": sum(n.touched for n in self.nodes.values()),
                "rolled_back_by_itself": sum(n.rolled_back_by_itself for n in self.nodes.values())}


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"--gateway: expected HOST:PORT, got {text!r}")
    return host, int(port)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m examples.devices", description=__doc__.splitlines()[0])
    p.add_argument("--gateway", type=_address, required=True, help="the update handler's UDP address, HOST:PORT")
    p.add_argument("--count", type=int, default=200)
    p.add_argument("--trust", action="append", required=True, help="a trusted publisher's Ed25519 public key, hex")
    p.add_argument("--hw", default="th-v1", help="hardware ids, comma-separated, assigned round-robin")
    p.add_argument("--version", default="1.0.0")
    p.add_argument("--counter", type=int, default=1)
    p.add_argument("--keepalive", type=float, default=5.0)
    p.add_argument("--fail-health", default="", help="node ids whose self-test fails after an update")
    p.add_argument("--offline", default="", help="node ids that never answer")
    p.add_argument("--power-loss", default="", help="ID:FRACTION,... lose power after that part of a transfer")
    p.add_argument("--summary", type=Path, help="write a JSON summary here on SIGTERM/SIGINT")
    args = p.parse_args(argv)
    fleet = Fleet(args.count, args.gateway, args.trust, hardware=args.hw.split(","), version=args.version,
                  counter=args.counter, keepalive=args.keepalive)
    for name in filter(None, args.fail_health.split(",")):
        fleet.nodes[name].fail_health = True
    for name in filter(None, args.offline.split(",")):
        fleet.nodes[name].offline = True
    for item in filter(None, args.power_loss.split(",")):
        name, _, frac = item.partition(":")
        fleet.nodes[name].power_loss_at = float(frac or 0.5)

    async def serve() -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with trio.open_nursery() as nursery:
                await nursery.start(fleet.run)
                print(f"fleet: {len(fleet.nodes)} nodes talking to {args.gateway[0]}:{args.gateway[1]}", flush=True)
                async for _ in signals:
                    if args.summary:
                        args.summary.write_text(json.dumps(fleet.summary()))
                    nursery.cancel_scope.cancel()
                    break
    trio.run(serve)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
