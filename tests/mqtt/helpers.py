"""Small helpers shared by the mqtt end-to-end tests: site text, batches, a tiny retry loop."""

from __future__ import annotations

import json

import trio

from sitegate.model import Batch
from sitegate.plugins import SinkError
from sitegate.testing.harness import wait_for
# A gateway in its own process (SIGKILL tests): the data plane's helpers, re-exported, not copied.
from tests.dataplane.dp_helpers import kill_gateway, start_gateway, stop_gateway, wait_until  # noqa: F401


def mqtt_entry(entry_id: str, broker, *, tls: bool = False, extra: str = "", indent: str = "  ") -> str:
    port = broker.tls_port if tls else broker.port
    lines = [f"- id: {entry_id}", "  domain: mqtt", "  config:", f"    host: 127.0.0.1", f"    port: {port}",
             "    reconnect_min: 0.05", "    reconnect_max: 0.5", "    connect_timeout: 3"]
    lines += ["    " + line for line in extra.strip("\n").splitlines() if line.strip()]
    return "\n".join(indent + line for line in lines) + "\n"


def site_with(*entries: str, site: str = "test/site") -> str:
    return f"site: {site}\nentries:\n" + "".join(entries)


def make_batches(device: str, n_batches: int, per_batch: int = 5, start_seq: int = 0, t0: float = 1_700_000_000.0):
    out = []
    seq = start_seq
    for b in range(n_batches):
        points = [f"p{i}" for i in range(per_batch)]
        values = [seq + i for i in range(per_batch)]
        ts = [t0 + seq + i for i in range(per_batch)]
        out.append(Batch(device, points, values, ts, None, "sim", seq))
        seq += per_batch
    return out


async def loaded(host, entry_id: str, timeout: float = 10.0):
    await wait_for(lambda: host.entry(entry_id).state.label == "loaded", timeout,
                   what=f"entry {entry_id} loaded (is {host.entry(entry_id).state.label}: {host.entry(entry_id).reason})")
    return host.entry(entry_id)


async def deliver_with_retry(sink, batches, *, deadline: float = 30.0, pause: float = 0.05) -> int:
    """A stand-in for the data plane's retry loop: retry until delivered; returns the failures seen."""
    failures = 0
    with trio.fail_after(deadline):
        while True:
            try:
                await sink.deliver(batches)
                return failures
            except SinkError as exc:
                assert not exc.permanent, f"unexpected permanent error: {exc}"
                failures += 1
                await trio.sleep(pause)  # the retry backoff of the stand-in, not a wait for a condition


def payloads(messages) -> list[dict]:
    return [json.loads(m.payload) for m in messages]

