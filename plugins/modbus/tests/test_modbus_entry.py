"""The modbus integration in a running site: readings published, devices declared, writes as
commands, "not ready" until the device is reachable, config errors with their place."""

from __future__ import annotations

import pytest

from plugins.modbus.tests.server_process import free_port
from sitegate.entries import EntryState
from sitegate.errors import ConfigError
from sitegate.model import Command, Quality
from sitegate.structure import structure
from sitegate.testing import Recorder, running_site, wait_for


def site(port: int, extra: str = "") -> str:
    return f"""
    site: t
    entries:
      - id: meter
        domain: modbus
        config:
          host: 127.0.0.1
          port: {port}
          timeout: 300ms
          reconnect_min: 50ms
          reconnect_max: 200ms
          devices:
            - name: main
              unit: 1
              poll: 50ms
              manufacturer: Example
              points:
                - {{name: temp, address: 65, type: int16, scale: 0.1, offset: -40, unit: degC}}
                - {{name: energy, address: 10, type: uint32, unit: Wh}}
                - {{name: setpoint, address: 90, type: float32, order: CDAB, writable: true}}
                - {{name: relay, table: coil, address: 30, type: bool, writable: true}}
            - name: second
              unit: 2
              poll: 100ms
              points:
                - {{name: in_f32, table: input, address: 1, type: float32, order: CDAB}}
    {extra}"""


async def test_entry_publishes_decoded_readings_and_declares_its_devices(tmp_path, modbus_server):
    server = await modbus_server(units="1,2")
    async with running_site(tmp_path, site(server.port)) as host:
        rec = Recorder(host)
        await wait_for(lambda: {"meter.main", "meter.second"} <= rec.devices(), what="both devices")
        values = {p: v for _, p, v, _ in rec.readings("meter.main")}
        assert values["temp"] == pytest.approx(25.0) and values["energy"] == 4_000_000_000
        assert {p: v for _, p, v, _ in rec.readings("meter.second")}["in_f32"] == pytest.approx(123.456, rel=1e-6)
        assert host.devices.point("meter.main", "temp").unit == "degC"
        assert host.devices.point("meter.main", "setpoint").writable
        diag = host.entry("meter").integration.hook("entry_diagnostics")(entry=host.entry("meter"))
        assert diag["devices"]["meter.main"]["online"] is True
        # holding 10..11, 65, 90..91 are too far apart to merge (max_gap 16), plus the coil
        assert diag["devices"]["meter.main"]["reads_per_cycle"] == {"0.05s": 4}
        # The numbers Prometheus scrapes (sitegate_adapter_*): lateness is measured, devices counted.
        metrics = host.entry("meter").integration.hook("entry_metrics")(entry=host.entry("meter"))
        assert metrics["devices_online"] == 2 and metrics["devices_offline"] == 0
        assert metrics["poll_lateness_p99_seconds"] >= metrics["poll_lateness_p50_seconds"] >= 0
        assert all(name.replace("_", "").isalnum() and name.islower() for name in metrics)


async def test_write_command_is_acknowledged_and_read_back(tmp_path, modbus_server):
    server = await modbus_server(units="1,2")
    async with running_site(tmp_path, site(server.port)) as host:
        await wait_for(lambda: host.entry("meter").state is EntryState.LOADED, what="entry loaded")
        result = await host.command("meter", Command("meter.main", "write", "setpoint", 21.5, {"verify": True}))
        assert result.status == "ack" and result.value == 21.5
        result = await host.command("meter", Command("meter.main", "write", "relay", True))
        assert result.ok
        rec = Recorder(host)
        await wait_for(lambda: ("meter.main", "setpoint", 21.5) in [r[:3] for r in rec.readings()]
                       and ("meter.main", "relay", True) in [r[:3] for r in rec.readings()], what="written values polled")
        result = await host.command("meter", Command("meter.main", "write", "temp", 1))
        assert result.status == "nack" and "not writable" in result.detail
        result = await host.command("meter", Command("meter.main", "read", "energy"))
        assert result.ok and result.value == 4_000_000_000
        result = await host.command("meter", Command("meter.main", "reboot"))
        assert result.status == "nack" and "unknown action 'reboot'" in result.detail


async def test_entry_is_not_ready_until_the_device_answers_then_recovers(tmp_path, modbus_server):
    port = free_port()
    async with running_site(tmp_path, site(port)) as host:
        ctx = host.entry("meter")
        await wait_for(lambda: ctx.state is EntryState.SETUP_RETRY, what="setup_retry")
        assert "cannot connect to tcp://127.0.0.1:" in ctx.reason
        server = await modbus_server(port=port, units="1,2")
        rec = Recorder(host)
        await wait_for(lambda: ctx.state is EntryState.LOADED and "meter.main" in rec.devices(), timeout=10,
                       what="entry loaded once the server is up")
        # the device then drops away: its points go bad with the reason, the entry stays loaded
        server.stop()
        await wait_for(lambda: any(q in (Quality.BAD_COMM, Quality.BAD_OFFLINE, Quality.BAD_TIMEOUT)
                                   for b in rec.batches if b.device == "meter.main" for q in (b.quality or ())),
                       what="bad quality after the server stopped")
        assert ctx.state is EntryState.LOADED


def test_config_errors_name_their_place():
    from plugins.modbus.config import ModbusConfig
    with pytest.raises(ConfigError) as e:
        structure({"host": "h", "devices": [{"name": "a", "points": [{"name": "x", "address": 70000}]}]},
                  ModbusConfig, path="entries[0].config")
    assert "entries[0].config.devices[0].points[0]" in str(e.value) and "address: expected 0..65535" in str(e.value)
    with pytest.raises(ConfigError, match="host: a tcp link needs a host"):
        structure({"points": [{"name": "x", "address": 1}]}, ModbusConfig)
    with pytest.raises(ConfigError, match="serial: an rtu link needs the serial device path"):
        structure({"link": "rtu", "points": [{"name": "x", "address": 1}]}, ModbusConfig)
    with pytest.raises(ConfigError, match=r"duplicate point names \['x'\]"):
        structure({"host": "h", "points": [{"name": "x", "address": 1}, {"name": "x", "address": 2}]}, ModbusConfig)
    with pytest.raises(ConfigError, match="lies in a gap the device refuses"):
        structure({"host": "h", "points": [{"name": "x", "address": 5}],
                   "gaps": [{"table": "holding", "start": 0, "end": 9}]}, ModbusConfig)
