"""sli_sync_lag_seconds: the age of the oldest reading a sink has not acknowledged.

A sink that is down falls behind by the time it has been down; one that keeps up stays near 0.
The detector tracks WAL positions (the sinks' cursors and the newest ids), not backlog counts.
"""

from __future__ import annotations

import trio

from sitegate.testing import running_site, wait_for
from tests.dataplane.dp_helpers import FIXTURES


async def test_a_sink_that_is_down_lags_by_the_time_it_is_down_one_that_keeps_up_does_not(tmp_path):
    (tmp_path / "down").touch()
    site = f"""
        site: t
        entries:
          - {{id: sim, domain: simulator, config: {{devices: 2, interval: 50ms}}}}
          - {{id: a, domain: filesink, config: {{path: {tmp_path}/a}}}}
          - {{id: b, domain: filesink, config: {{path: {tmp_path}/b, down_flag: {tmp_path}/down}}}}
        routes:
          - {{from: ["sim.*/*"], to: [a, b], priority: critical}}
        storage: {{retry_initial: 10ms, retry_max: 50ms}}
        """
    async with running_site(tmp_path, site, plugin_dirs=[FIXTURES]) as host:
        det = host.services["detectors"]
        await wait_for(lambda: "b" in det.sync_lag and "a" in det.sync_lag, 5, what="the first lag")
        start = trio.current_time()
        await trio.sleep(3.5)
        waited = trio.current_time() - start
        assert det.sync_lag["b"] >= waited - 1.5, det.sync_lag      # one tick's resolution, and the start
        assert det.sync_lag["a"] <= 1.5, det.sync_lag
        (tmp_path / "down").unlink()
        await wait_for(lambda: det.sync_lag["b"] <= 1.5, 10, what="b caught up")
