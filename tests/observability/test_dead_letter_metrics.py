"""/metrics says how many dead letters the table holds, by kind, and what became of ingress replays.

A real site (acklog adapter, file sink refusing 7.0 for good), scraped over HTTP; the table
changes through the site (dead letters stored, replayed, decoded) and from another process
(`sitegate dlq purge`), and the gauge follows both.
"""

from __future__ import annotations

import trio
from prometheus_client.parser import text_string_to_metric_families

from sitegate.cli import main
from sitegate.dataplane.deadletters import Selection
from sitegate.model import Batch
from sitegate.testing import running_site, wait_for
from tests.dataplane.dp_helpers import FIXTURES, poison_site
from tests.observability.test_metrics_health import _get


def scrape(port: int) -> dict[tuple[str, str], float]:
    """(name, label value) -> value of the dead-letter metrics."""
    status, text = _get(port, "/metrics")
    assert status == 200
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name in ("sitegate_dead_letters", "sitegate_ingress_replays_total"):
                out[(s.name, s.labels.get("kind") or s.labels.get("outcome"))] = s.value
    return out


async def test_dead_letters_by_kind_and_ingress_replay_outcomes(tmp_path):
    async with running_site(tmp_path, poison_site(tmp_path), plugin_dirs=[FIXTURES]) as host:
        port = host.services["metrics_http"].port
        plane = host.services["dataplane"]
        entry = host.entry("src")

        async def metrics():
            return await trio.to_thread.run_sync(scrape, port)

        # Every series from the start (increase() needs it before the first replay).
        assert set(await metrics()) == {("sitegate_dead_letters", "sink"), ("sitegate_dead_letters", "ingress"),
                                        ("sitegate_ingress_replays_total", "decoded"),
                                        ("sitegate_ingress_replays_total", "failed_again"),
                                        ("sitegate_ingress_replays_total", "untried")}
        await wait_for(lambda: plane.deliveries["out"].dead_letters == 4, 10, what="4 sink dead letters")

        async def redecode(letters):
            results = []
            for dl in letters:
                if dl.payload.startswith(b"t="):
                    await entry.publish(Batch("src.fixed", ["t"], [float(dl.payload[2:])], [dl.received_at]))
                    results.append(None)
                else:
                    results.append(f"still no '=' in {dl.payload!r}")
            return results

        entry.on_redecode(redecode)
        for payload in (b"t=1.5", b"garbage", b"t=2"):
            entry.dead_letter(payload, source="dev/x", error="old mapping")
        await entry.dead_letters_committed()
        await plane.flush_dead_letters()      # the sink dead letters' writes too
        got = await metrics()
        assert (got[("sitegate_dead_letters", "sink")], got[("sitegate_dead_letters", "ingress")]) == (4, 3)
        await plane.replay_dead_letters(Selection(kind="ingress"))
        got = await metrics()
        assert got == {("sitegate_dead_letters", "sink"): 4, ("sitegate_dead_letters", "ingress"): 1,
                       ("sitegate_ingress_replays_total", "decoded"): 2,
                       ("sitegate_ingress_replays_total", "failed_again"): 1,
                       ("sitegate_ingress_replays_total", "untried"): 0}
        # Another process empties the table: the site notices (within replay_every) and counts again.
        path = str(plane.wal.path)
        assert await trio.to_thread.run_sync(main, ["dlq", "purge", "--db", path, "--kind", "sink"]) == 0

        async def sink_letters():
            return (await metrics())[("sitegate_dead_letters", "sink")]

        with trio.fail_after(10):
            while await sink_letters() != 0:
                await trio.sleep(0.1)
        assert (await metrics())[("sitegate_dead_letters", "ingress")] == 1
