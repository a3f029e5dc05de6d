"""Operators' view: /metrics parses as Prometheus text, /healthz and /readyz tell the truth."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import trio
from prometheus_client.parser import text_string_to_metric_families

from sitegate.testing import Recorder, running_site, wait_for


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


async def test_metrics_scrape_parses_and_counts_readings(tmp_path):
    site = """
    site: t
    entries:
      - {id: sim, domain: simulator, config: {interval: 10ms, devices: 2}}
    """
    async with running_site(tmp_path, site) as host:
        port = host.services["metrics_http"].port
        await wait_for(lambda: host.pipeline.readings_in > 50)
        status, text = await trio.to_thread.run_sync(_get, port, "/metrics")
        assert status == 200
        samples = {}
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
        assert samples[("sitegate_readings_in_total", ())] > 50
        assert samples[("sitegate_entry_up", (("domain", "simulator"), ("entry", "sim")))] == 1.0
        assert samples[("sitegate_process_resident_bytes", ())] > 10e6
        # Labels stay bounded: nothing per reading or per point value.
        assert all(len(labels) <= 4 for _, labels in samples)


async def test_readyz_names_the_entry_that_is_not_ready(tmp_path):
    site = """
    site: t
    entries:
      - {id: ok, domain: simulator}
      - {id: broken, domain: simulator, config: {devices: 0}}
    """
    async with running_site(tmp_path, site) as host:
        port = host.services["metrics_http"].port
        status, body = await trio.to_thread.run_sync(_get, port, "/healthz")
        assert status == 200 and json.loads(body)["status"] == "alive"
        status, body = await trio.to_thread.run_sync(_get, port, "/readyz")
        doc = json.loads(body)
        assert status == 503 and doc["entries"] == {"ok": "loaded", "broken": "setup_error"}
        assert any("broken is setup_error" in p and "devices: expected at least 1" in p for p in doc["problems"])
        # The reason carries the file and line of the bad value, as `sitegate check` prints it.
        assert any("site.yaml:" in p and "entries[1].config" in p for p in doc["problems"]), doc["problems"]


async def test_retrying_entry_counts_as_ready(tmp_path):
    site = """
    site: t
    entries:
      - {id: later, domain: simulator, config: {fail_setup: true}}
    """
    async with running_site(tmp_path, site) as host:
        port = host.services["metrics_http"].port
        status, body = await trio.to_thread.run_sync(_get, port, "/readyz")
        assert status == 200, body


async def test_dataplane_metrics_and_slis_are_scraped(tmp_path):
    site = """
    site: t
    entries:
      - {id: sim, domain: simulator, config: {interval: 10ms, devices: 2}}
      - {id: hist, domain: history}
    routes:
      - {name: all, from: ["sim.*/*"], to: [hist]}
    """
    async with running_site(tmp_path, site) as host:
        port = host.services["metrics_http"].port

        def scrape():
            status, text = _get(port, "/metrics")
            out = {}
            for fam in text_string_to_metric_families(text):
                for s in fam.samples:
                    out[(s.name, tuple(sorted(s.labels.items())))] = s.value
            return out

        await wait_for(lambda: host.services["dataplane"].sink_status().get("hist", {}).get("delivered", 0) > 100,
                       timeout=20, what="history to receive readings")
        samples = await trio.to_thread.run_sync(scrape)
        assert samples[("sitegate_wal_committed_readings_total", ())] > 100
        assert samples[("sitegate_sink_delivered_readings_total", (("sink", "hist"),))] > 100
        assert samples[("sitegate_sink_connectivity", (("sink", "hist"),))] == 2
        assert 0.5 <= samples[("sitegate_sli_delivery_ratio", (("sink", "hist"),))] <= 1.0
        # history is a local sink: nothing left the site
        assert samples[("sitegate_sli_data_reduction_ratio", ())] == 0.0
        assert ("sitegate_wal_depth_readings", (("priority", "normal"),)) in samples


async def test_integrations_export_their_own_metrics_with_bounded_names(tmp_path):
    from pathlib import Path
    fixtures = Path(__file__).resolve().parents[1] / "core" / "fixture_plugins"
    site = """
    site: t
    entries:
      - {id: g, domain: gauges}
    """
    async with running_site(tmp_path, site, plugin_dirs=[fixtures]) as host:
        port = host.services["metrics_http"].port
        await wait_for(lambda: host.entry("g").state.label == "loaded")
        status, text = await trio.to_thread.run_sync(_get, port, "/metrics")
        assert 'sitegate_adapter_polls_total{domain="gauges",entry="g"} 42.0' in text
        assert 'sitegate_adapter_queue_depth{domain="gauges",entry="g"} 3.5' in text
        assert "Bad-Name" not in text and "adapter_text" not in text


async def test_loop_lag_histogram_and_time_held_per_entry(tmp_path):
    site = """
    site: t
    entries:
      - {id: sim, domain: simulator, config: {interval: 5ms, devices: 5}}
    """
    async with running_site(tmp_path, site) as host:
        port = host.services["metrics_http"].port
        await wait_for(lambda: sum(host.watchdog.lag_counts) >= 5, what="lag samples")
        await wait_for(lambda: host.watchdog.held.get("sim", 0) > 0)
        status, text = await trio.to_thread.run_sync(_get, port, "/metrics")
        fams = {f.name: f for f in text_string_to_metric_families(text)}
        lag = fams["sitegate_loop_lag_seconds"]
        assert lag.type == "histogram"
        count = [s.value for s in lag.samples if s.name.endswith("_count")][0]
        inf = [s.value for s in lag.samples if s.name.endswith("_bucket") and s.labels["le"] == "+Inf"][0]
        assert count == inf >= 5
        held = {s.labels["entry"]: s.value for s in fams["sitegate_loop_held_seconds"].samples
                if s.name.endswith("_total")}
        assert held["sim"] > 0 and "core" in held


async def test_processor_drops_are_counted_per_route_step(tmp_path):
    site = """
    site: t
    entries:
      - id: sim
        domain: simulator
        config: {interval: 10ms, points: [{name: flat, shape: step, amplitude: 0, offset: 5}]}
      - {id: hist, domain: history}
    routes:
      - {name: quiet, from: ["sim.*/*"], through: [{deadband: {abs: 1}}], to: [hist]}
    """
    async with running_site(tmp_path, site) as host:
        port = host.services["metrics_http"].port
        route = host.services["dataplane"].table.routes[0]
        await wait_for(lambda: route.step_in[0] >= 20, what="readings through the deadband")
        status, text = await trio.to_thread.run_sync(_get, port, "/metrics")
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for f in text_string_to_metric_families(text) for s in f.samples}
        key = (("route", "quiet"), ("step", "0:" + type(route.steps[0]).__name__))
        # A flat signal: the deadband passes the first reading and suppresses the rest.
        assert samples[("sitegate_processor_in_total", key)] >= 20
        assert samples[("sitegate_processor_dropped_total", key)] >= samples[("sitegate_processor_in_total", key)] - 2
