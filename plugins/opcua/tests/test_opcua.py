"""The OPC UA adapter against an asyncua server in another process."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import trio

from sitegate.entries import EntryState
from sitegate.model import Command, Quality
from sitegate.testing import Recorder, running_site, wait_for

POINTS = """
            - {name: temperature, node: "ns=2;s=Line1.Temperature", unit: degC}
            - {name: counter, path: Plant/Line1/Counter}
            - {name: setpoint, node: "ns=2;s=Line1.Setpoint", writable: true}
            - {name: running, path: "2:Plant/2:Line1/2:Running"}
"""


def site(endpoint: str, extra: str = "", points: str = POINTS) -> str:
    return f"""
    site: t
    entries:
      - id: plc
        domain: opcua
        config:
          endpoint: {endpoint}
          publishing_interval: 50ms
          liveness: 300ms
          timeout: 2s
          {extra}
          points:{points}
    """


def values(rec, point):
    return [(v, t) for _, p, v, t in rec.readings("plc") if p == point]


async def test_changing_values_arrive_through_subscriptions_with_source_timestamps(tmp_path, opcua_server):
    server = opcua_server("--period", "0.05")
    async with running_site(tmp_path, site(server.endpoint)) as host:
        rec = Recorder(host)
        await wait_for(lambda: len(values(rec, "temperature")) >= 5, timeout=20, what="temperature notifications")
        temps = [v for v, _ in values(rec, "temperature")]
        assert temps == sorted(temps) and temps[-1] > temps[0]       # the server's ramp, in order
        # Static values arrive once, in the first notification, possibly before the recorder was attached:
        # read them from the pipeline's latest values.
        latest = lambda: host.pipeline.latest_of("plc")  # noqa: E731
        await wait_for(lambda: "setpoint" in latest() and "running" in latest(), timeout=30)
        assert latest()["setpoint"][0] == 42.0 and latest()["running"][0] is True
        ts = [t for _, t in values(rec, "counter")]
        assert ts == sorted(ts) and len(set(ts)) == len(ts)          # source timestamps, not arrival
        assert host.devices.point("plc", "temperature").unit == "degC"


async def test_server_restart_resumes_data_and_marks_the_gap(tmp_path, opcua_server):
    server = opcua_server("--period", "0.05")
    async with running_site(tmp_path, site(server.endpoint)) as host:
        rec = Recorder(host)
        events = host.events.subscribe("device.*")
        await wait_for(lambda: len(values(rec, "counter")) >= 3, timeout=20)
        server.stop()
        with trio.fail_after(20):
            offline = await events.receive.receive()
        assert offline.kind == "device.offline"
        bad = [b for b in rec.batches if b.quality and all(q == Quality.BAD_COMM for q in b.quality)]
        assert bad, "the outage must be visible as bad-quality readings"
        server.start()
        await wait_for(lambda: host.entry("plc").data["counters"]["reconnects"] >= 1, timeout=30,
                       what="the session to be re-established")
        mark = len(values(rec, "counter"))
        await wait_for(lambda: len(values(rec, "counter")) > mark + 3, timeout=20, what="data after the restart")
        assert host.entry("plc").state is EntryState.LOADED


async def test_the_session_asks_for_a_timeout_the_server_grants(tmp_path, opcua_server, caplog):
    # asyncua asks for an hour (an orphaned session after each link loss holds a server slot that long);
    # ours is session_timeout, which the server grants as asked: no "got ...ms instead" warning.
    server = opcua_server("--period", "0.05")
    for extra, granted in (("", 60_000), ("session_timeout: 20s", 20_000)):
        caplog.clear()
        async with running_site(tmp_path, site(server.endpoint, extra=extra)) as host:
            ctx = host.entry("plc")
            await wait_for(lambda: ctx.state is EntryState.LOADED and "session" in ctx.data, timeout=20)
            assert ctx.data["session"].client.session_timeout == granted
        warnings = [r.getMessage() for r in caplog.records if r.name.startswith("asyncua") and r.levelname == "WARNING"]
        assert not warnings, warnings


def test_a_session_timeout_shorter_than_three_liveness_checks_is_refused():
    from plugins.opcua.config import OpcuaConfig
    from sitegate.errors import ConfigError
    from sitegate.structure import structure
    with pytest.raises(ConfigError) as err:
        structure({"endpoint": "opc.tcp://plc:4840", "points": [], "liveness": "5s", "session_timeout": "10s"},
                  OpcuaConfig)
    assert "session_timeout: 10 s is shorter than 3 x liveness (5 s)" in str(err.value)
    # Unset, it follows a long liveness instead of refusing a site file that never named it.
    slow = structure({"endpoint": "opc.tcp://plc:4840", "points": [], "liveness": "30s"}, OpcuaConfig)
    assert slow.session_seconds == 90.0
    assert structure({"endpoint": "opc.tcp://plc:4840", "points": []}, OpcuaConfig).session_seconds == 60.0


async def test_subscription_that_stops_while_server_is_up_is_recreated(tmp_path, opcua_server):
    server = opcua_server("--period", "0.05")
    async with running_site(tmp_path, site(server.endpoint)) as host:
        rec = Recorder(host)
        await wait_for(lambda: len(values(rec, "counter")) >= 3, timeout=20)
        ctx = host.entry("plc")
        session, island = ctx.data["session"], ctx.data["island"]
        await island.call(session.subscription.delete)    # the subscription dies quietly
        await wait_for(lambda: ctx.data["counters"]["resubscribed"] >= 1, timeout=20, what="re-subscription")
        mark = len(values(rec, "counter"))
        await wait_for(lambda: len(values(rec, "counter")) > mark + 3, timeout=20)


async def test_writes_and_method_calls_are_acknowledged(tmp_path, opcua_server):
    server = opcua_server("--period", "0.05")
    async with running_site(tmp_path, site(server.endpoint)) as host:
        rec = Recorder(host)
        latest = lambda: host.pipeline.latest_of("plc")  # noqa: E731
        await wait_for(lambda: "setpoint" in latest(), timeout=60)
        ok = await host.command("plc", Command("plc", "write", "setpoint", 55.5))
        assert ok.status == "ack", ok
        await wait_for(lambda: latest()["setpoint"][0] == 55.5, timeout=30, what="the written value back")
        refused = await host.command("plc", Command("plc", "write", "temperature", 1.0))
        assert refused.status == "nack" and "not writable" in refused.detail
        called = await host.command("plc", Command("plc", "call", args={
            "object": "ns=2;s=Line1", "method": "ns=2;s=Line1.Reset", "inputs": [1000]}))
        assert called.status == "ack" and called.value == [True]
        await wait_for(lambda: any(v >= 1000 for v, _ in values(rec, "counter")), timeout=30, what="the reset counter")
        bad = await host.command("plc", Command("plc", "call", args={
            "object": "ns=2;s=Line1", "method": "ns=2;s=Line1.Nope"}))
        assert bad.status == "nack" and "Bad" in bad.detail


async def test_wrong_node_and_wrong_password_are_setup_errors_with_reasons(tmp_path, opcua_server):
    server = opcua_server("--user", "operator:s3cret")
    bad_node = site(server.endpoint, extra="username: operator\n          password: s3cret",
                    points="\n            - {name: x, node: \"ns=2;s=Line1.Nothing\"}")
    async with running_site(tmp_path, bad_node) as host:
        ctx = host.entry("plc")
        await wait_for(lambda: ctx.state is EntryState.SETUP_ERROR, timeout=20)
        assert "ns=2;s=Line1.Nothing" in ctx.reason
    wrong_pw = site(server.endpoint, extra="username: operator\n          password: guess")
    async with running_site(tmp_path, wrong_pw) as host:
        ctx = host.entry("plc")
        await wait_for(lambda: ctx.state in (EntryState.SETUP_ERROR, EntryState.SETUP_RETRY), timeout=20)
        assert "operator" in ctx.reason or "Bad" in ctx.reason


async def test_unreachable_server_retries_then_loads(tmp_path, opcua_server):
    from plugins.opcua.tests.conftest import OpcuaServer, free_port
    port = free_port()
    server = OpcuaServer(port, "--period", "0.05")
    async with running_site(tmp_path, site(server.endpoint)) as host:
        ctx = host.entry("plc")
        await wait_for(lambda: ctx.state is EntryState.SETUP_RETRY, timeout=20)
        assert "cannot reach" in ctx.reason or "opc.tcp" in ctx.reason
        await trio.to_thread.run_sync(server.start)
        try:
            await wait_for(lambda: ctx.state is EntryState.LOADED, timeout=30)
        finally:
            server.stop()


@pytest.fixture
def certificates(tmp_path):
    """A server and a client certificate (self-signed), made the way `sitegate opcua make-cert` makes them."""
    from plugins.opcua.tools import make_certificate
    pki = tmp_path / "pki"
    server = make_certificate(pki / "server", "urn:sitegate:test:server", "127.0.0.1")
    client = make_certificate(pki / "client", "urn:freeopcua:client", "127.0.0.1")
    return server, client, pki


async def test_encrypted_endpoint_with_trusted_server_certificate(tmp_path, opcua_server, certificates):
    (scert, skey), (ccert, ckey), pki = certificates
    server = opcua_server("--period", "0.05", "--secure", str(scert), str(skey))
    trust = pki / "trusted"
    trust.mkdir()
    shutil.copy(scert, trust / scert.name)
    extra = (f"security: {{mode: SignAndEncrypt, certificate: {ccert}, private_key: {ckey}, trust: {trust}}}")
    async with running_site(tmp_path, site(server.endpoint, extra=extra)) as host:
        rec = Recorder(host)
        await wait_for(lambda: len(values(rec, "counter")) >= 3, timeout=30, what="data over SignAndEncrypt")


async def test_untrusted_server_certificate_is_refused_with_a_clear_error(tmp_path, opcua_server, certificates):
    (scert, skey), (ccert, ckey), pki = certificates
    server = opcua_server("--secure", str(scert), str(skey))
    trust = pki / "trusted"
    trust.mkdir()
    extra = (f"security: {{mode: SignAndEncrypt, certificate: {ccert}, private_key: {ckey}, trust: {trust}}}")
    async with running_site(tmp_path, site(server.endpoint, extra=extra)) as host:
        ctx = host.entry("plc")
        await wait_for(lambda: ctx.state is EntryState.SETUP_ERROR, timeout=30)
        assert "untrusted server certificate" in ctx.reason and "not in the trust list" in ctx.reason
        rejected = list((pki / "rejected").glob("*.der"))
        assert len(rejected) == 1 and rejected[0].stem in ctx.reason
