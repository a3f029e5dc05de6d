"""The poller against a pymodbus server in another process: every type and order, on every link,
coalescing counted by the server, faults injected, writes, deadlines."""

from __future__ import annotations

import pytest
import trio

from plugins.modbus.client import ModbusConnectionError, ModbusTimeout
from plugins.modbus.config import DeviceConfig, ModbusConfig
from plugins.modbus.poller import LinkPoller
from plugins.modbus.registermap import Table
from plugins.modbus.tests.layout import GAPS, POINTS
from plugins.modbus.transport import Endpoint, Link
from sitegate.model import Quality
from sitegate.structure import structure
from sitegate.testing import wait_for


def device(points=None, **kw) -> DeviceConfig:
    points = points if points is not None else [dict(cfg, name=name) for name, (cfg, _) in POINTS.items()]
    return structure({"points": points, "gaps": GAPS, **kw}, DeviceConfig)


def endpoint(server, link: Link) -> Endpoint:
    if link is Link.TCP:
        return Endpoint(link, "127.0.0.1", server.port)
    if link is Link.RTU_OVER_TCP:
        return Endpoint(link, "127.0.0.1", server.rtu_tcp_port)
    return Endpoint(link, serial=server.serial, baudrate=115200)


class Collect:
    def __init__(self):
        self.batches = []
        self.events = []

    async def publish(self, batch):
        self.batches.append(batch)

    def emit(self, kind, **kw):
        self.events.append((kind, kw))

    def last(self, point):
        for b in reversed(self.batches):
            for p, v, _, q in b.rows():
                if p == point:
                    return v, q
        return None

    def kinds(self):
        return [k for k, _ in self.events]


def poller(ep, devices, out: Collect, **kw) -> LinkPoller:
    kw.setdefault("timeout", 0.5)
    return LinkPoller(ep, devices, out.publish, emit=out.emit, **kw)


@pytest.mark.parametrize("link", [Link.TCP, Link.RTU_OVER_TCP, Link.RTU], ids=lambda l: l.value)
async def test_every_type_and_word_order_reads_its_hand_computed_value(modbus_server, link):
    server = await modbus_server(rtu_tcp=True, serial=link is Link.RTU)
    out = Collect()
    p = poller(endpoint(server, link), [("dev", device())], out)
    await p.connect()
    (interval, requests), = p.devices["dev"].groups
    batch = await p.poll_once(p.devices["dev"], requests)
    await p.aclose()
    assert batch.quality is None, list(batch.rows())
    got = dict(zip(batch.points, batch.values))
    for name, (_, expected) in POINTS.items():
        if isinstance(expected, float):
            assert got[name] == pytest.approx(expected, rel=1e-6), name
        else:
            assert got[name] == expected and type(got[name]) is type(expected), name


async def test_nearby_points_are_read_in_the_fewest_requests_and_gaps_are_respected(modbus_server):
    server = await modbus_server()
    out = Collect()
    p = poller(endpoint(server, Link.TCP), [("dev", device())], out)
    await p.connect()
    (_, requests), = p.devices["dev"].groups
    await server.command("reset")
    await p.poll_once(p.devices["dev"], requests)
    seen = await server.stats()
    # 35 points: holding 0..65 in one read, the point after the refused gap alone, then one read per other table
    assert seen == {"requests": 5, "3:0:66": 1, "3:110:1": 1, "4:0:3": 1, "1:0:4": 1, "2:1:7": 1}
    assert out.batches[-1].quality is None
    await p.aclose()


async def test_without_the_declared_gap_a_merged_read_is_refused_then_split(modbus_server):
    server = await modbus_server()
    out = Collect()
    pts = [{"name": "a", "address": 99}, {"name": "b", "address": 110}]
    p = poller(endpoint(server, Link.TCP), [("dev", structure({"points": pts, "max_gap": 20}, DeviceConfig))], out)
    await p.connect()
    (_, requests), = p.devices["dev"].groups
    assert [(r.address, r.count) for r in requests] == [(99, 12)]
    batch = await p.poll_once(p.devices["dev"], requests)
    assert batch.quality == [Quality.BAD_DEVICE, Quality.BAD_DEVICE]
    assert "exception 2 (illegal data address)" in p.devices["dev"].last_error
    assert p.devices["dev"].online is True        # it answered: refused, not gone
    # it learns: the refused read is split into reads without the unused addresses, and says so
    assert [(r.address, r.count) for r in requests] == [(99, 1), (110, 1)]
    assert "modbus.read_split" in out.kinds() and p.devices["dev"].counters["reads_split"] == 1
    await server.command("reset")
    batch = await p.poll_once(p.devices["dev"], requests)
    assert batch.quality is None and batch.values == [0, 7]
    assert await server.stats() == {"requests": 2, "3:99:1": 1, "3:110:1": 1}
    await p.aclose()


async def test_exception_responses_make_points_bad_with_the_code_and_are_counted(modbus_server):
    server = await modbus_server()
    out = Collect()
    pts = [{"name": "u16", "address": 0}, {"name": "in", "address": 0, "table": "input"}]
    p = poller(endpoint(server, Link.TCP), [("dev", device(pts))], out)
    await p.connect()
    dev = p.devices["dev"]
    (_, requests), = dev.groups
    await server.command("exception 6")
    batch = await p.poll_once(dev, requests)
    assert list(batch.quality) == [Quality.BAD_DEVICE] * 2
    assert "server device busy" in dev.last_error
    assert dev.counters["exception_6"] == 2 and dev.counters["faults_exception"] == 2
    # the same bad quality is not published again every cycle
    assert await p.poll_once(dev, requests) is None
    await server.command("exception 0")
    batch = await p.poll_once(dev, requests)
    assert batch.quality is None and batch.values == [0x1234, 42]
    await p.aclose()


async def test_short_answers_are_bad_decode_not_crashes(modbus_server):
    server = await modbus_server()
    out = Collect()
    p = poller(endpoint(server, Link.TCP), [("dev", device([{"name": "a", "address": 0, "type": "uint32"}]))], out)
    await p.connect()
    dev = p.devices["dev"]
    await server.command("short on")
    batch = await p.poll_once(dev, dev.groups[0][1])
    assert list(batch.quality) == [Quality.BAD_DECODE]
    assert "short answer" in dev.last_error and p.client.counters["malformed"] == 1
    await server.command("short off")
    batch = await p.poll_once(dev, dev.groups[0][1])
    assert batch.values == [0x1234FFFE] and batch.quality is None   # registers 0 and 1
    await p.aclose()


@pytest.mark.parametrize("link", [Link.TCP, Link.RTU_OVER_TCP], ids=lambda l: l.value)
async def test_timeouts_enforced_by_the_watchdog_task_close_the_connection(modbus_server, link):
    server = await modbus_server(rtu_tcp=True)
    p = poller(endpoint(server, link), [("dev", device([{"name": "a", "address": 0}]))], Collect(), timeout=0.3)
    await p.connect()
    async with trio.open_nursery() as nursery:
        await nursery.start(p.client.watch_timeouts)
        assert list(await p.client.read(1, Table.HOLDING, 0, 1)) == [0x1234]
        await server.command("delay 2")
        t0 = trio.current_time()
        with pytest.raises(ModbusTimeout, match="no answer from unit 1 within 0.3 s"):
            await p.client.read(1, Table.HOLDING, 0, 1)
        assert trio.current_time() - t0 >= 0.3       # not early (and it raised: the answer was not awaited)
        assert not p.client.connected and p.client.counters["timeouts"] == 1
        assert p.client.counters["connection_lost"] == 0      # a timeout, not counted as a drop
        await server.command("delay 0")
        await p.client.connect()
        assert list(await p.client.read(1, Table.HOLDING, 65, 1)) == [650]
        nursery.cancel_scope.cancel()
    await p.aclose()


async def test_garbage_on_tcp_drops_the_connection_and_a_bad_crc_on_rtu_is_bad_decode(modbus_server):
    server = await modbus_server(rtu_tcp=True)
    pts = [{"name": "a", "address": 0}]
    for link, command, reason in [(Link.TCP, "garbage", "not Modbus TCP"), (Link.RTU_OVER_TCP, "corrupt", "CRC")]:
        out = Collect()
        p = poller(endpoint(server, link), [("dev", device(pts))], out, timeout=0.3)
        await p.connect()
        dev = p.devices["dev"]
        await server.command(f"{command} on")
        batch = await p.poll_once(dev, dev.groups[0][1])
        assert list(batch.quality) == [Quality.BAD_DECODE] and reason in dev.last_error, dev.last_error
        assert p.client.counters["malformed"] == 1
        assert dev.online is True                  # it answered, if badly
        await server.command(f"{command} off")
        if not p.client.connected:                 # TCP: no frame boundary left to find, so reconnect
            await p.client.connect()
        batch = await p.poll_once(dev, dev.groups[0][1])
        assert batch.values == [0x1234] and batch.quality is None
        await p.aclose()


async def test_a_saturated_pipeline_slows_polling_and_missed_deadlines_are_counted(modbus_server):
    server = await modbus_server()
    out = Collect()
    interval = 0.05

    async def slow_publish(batch):
        out.batches.append(batch)
        if len(out.batches) == 2:
            # the pipeline holds this batch for three intervals (the stimulus, not a wait for a result)
            await trio.sleep(3 * interval)

    p = LinkPoller(endpoint(server, Link.TCP), [("dev", device([{"name": "a", "address": 0}], poll=interval))],
                   slow_publish, timeout=0.5)
    await p.connect()
    async with trio.open_nursery() as nursery:
        await nursery.start(p.run)
        await wait_for(lambda: len(out.batches) >= 4, what="polls after the stall")
        nursery.cancel_scope.cancel()
    dev = p.devices["dev"]
    assert dev.counters["missed_deadlines"] >= 2      # not made up for with back-to-back polls
    await p.aclose()


async def test_client_writes_several_coils_and_a_single_register_with_function_16(modbus_server):
    server = await modbus_server()
    p = poller(endpoint(server, Link.TCP), [("dev", device([{"name": "a", "address": 0}]))], Collect())
    await p.connect()
    await server.command("reset")
    await p.client.write_coils(1, 24, [True, False, True])
    await p.client.write_registers(1, 95, [777], single=False)
    assert list(await p.client.read(1, Table.COIL, 24, 3)) == [True, False, True]
    assert list(await p.client.read(1, Table.HOLDING, 95, 1)) == [777]
    seen = await server.stats()
    assert seen["15:24:3"] == 1 and seen["16:95:1"] == 1
    await p.aclose()


async def test_slow_device_times_out_goes_offline_and_comes_back(modbus_server):
    server = await modbus_server()
    out = Collect()
    pts = [{"name": "a", "address": 0}, {"name": "b", "address": 0, "table": "input"}]
    p = poller(endpoint(server, Link.TCP), [("dev", device(pts, poll=0.05))], out, timeout=0.25,
               offline_after=2, reconnect_min=0.05, reconnect_max=0.2)
    await p.connect()
    dev = p.devices["dev"]
    async with trio.open_nursery() as nursery:
        await nursery.start(p.run)
        await wait_for(lambda: dev.online is True, what="first good poll")
        await server.command("delay 0.6")
        await wait_for(lambda: dev.online is False, what="device offline")
        assert out.last("a")[1] == Quality.BAD_OFFLINE
        assert dev.counters["faults_timeout"] >= 1
        assert dev.counters["faults_timeout"] + dev.counters["faults_connection"] >= 2
        # once one request timed out, the other one of the same cycle is not tried
        assert p.client.counters["timeouts"] == dev.counters["faults_timeout"]
        assert "modbus.device_offline" in out.kinds()
        await server.command("delay 0")
        await wait_for(lambda: dev.online is True and out.last("a") == (0x1234, 0), what="device back online")
        assert "modbus.device_online" in out.kinds()
        nursery.cancel_scope.cancel()
    await p.aclose()


async def test_a_late_answer_is_never_taken_for_the_current_one(modbus_server):
    server = await modbus_server()
    out = Collect()
    p = poller(endpoint(server, Link.TCP), [("dev", device([{"name": "a", "address": 0}]))], out, timeout=0.1)
    await p.connect()
    await server.command("delay 0.4")
    with pytest.raises(Exception, match="no answer from unit 1 within 0.1 s"):
        await p.client.read(1, Table.HOLDING, 0, 1)
    assert not p.client.connected        # the connection the late answer would come back on is gone
    await server.command("delay 0")
    await p.client.connect()
    end = trio.current_time() + 0.6      # the late answer is due at 0.4 s
    while trio.current_time() < end:
        assert list(await p.client.read(1, Table.HOLDING, 65, 1, timeout=5)) == [650]
    await p.aclose()


async def test_server_stopped_and_restarted_reconnects_with_backoff(modbus_server):
    server = await modbus_server()
    out = Collect()
    p = poller(endpoint(server, Link.TCP), [("dev", device([{"name": "a", "address": 0}], poll=0.05))], out,
               timeout=0.2, offline_after=2, reconnect_min=0.05, reconnect_max=0.2)
    await p.connect()
    dev = p.devices["dev"]
    async with trio.open_nursery() as nursery:
        await nursery.start(p.run)
        await wait_for(lambda: out.last("a") == (0x1234, 0), what="first reading")
        server.stop()
        await wait_for(lambda: dev.online is False, what="device offline after the server stopped")
        assert p.counters["faults_connection"] >= 1 and p.counters["reconnect_failures"] >= 1
        assert out.last("a")[1] in (Quality.BAD_COMM, Quality.BAD_OFFLINE)
        n = len(out.batches)
        await modbus_server(port=server.port)
        await wait_for(lambda: dev.online is True and len(out.batches) > n and out.last("a") == (0x1234, 0),
                       timeout=10, what="readings after the restart")
        assert p.counters["reconnects"] >= 1
        nursery.cancel_scope.cancel()
    await p.aclose()


async def test_connect_to_nothing_fails_with_the_reason():
    from plugins.modbus.tests.server_process import free_port
    p = poller(Endpoint(Link.TCP, "127.0.0.1", free_port()), [("dev", device([{"name": "a", "address": 0}]))],
               Collect())
    with pytest.raises(ModbusConnectionError, match="cannot connect to tcp://127.0.0.1:"):
        await p.connect()


async def test_several_unit_ids_on_one_link_are_polled_concurrently(modbus_server):
    server = await modbus_server(units="1,2")
    out = Collect()
    devs = [(f"u{u}", device([{"name": "a", "address": 0}, {"name": "t", "address": 65, "type": "int16",
                                                            "scale": 0.1, "offset": -40}], unit=u, poll=0.05))
            for u in (1, 2)]
    p = poller(endpoint(server, Link.TCP), devs, out)
    await p.connect()
    async with trio.open_nursery() as nursery:
        await nursery.start(p.run)
        await wait_for(lambda: {b.device for b in out.batches} == {"u1", "u2"}, what="both units")
        nursery.cancel_scope.cancel()
    assert all(b.values[0] == 0x1234 and b.values[1] == pytest.approx(25.0) for b in out.batches)
    await p.aclose()


async def test_on_a_serial_line_a_silent_unit_goes_offline_while_the_others_keep_answering(modbus_server):
    server = await modbus_server(serial=True, units="1,2")
    out = Collect()
    pts = [{"name": "a", "address": 0}, {"name": "t", "address": 65, "type": "int16", "scale": 0.1, "offset": -40}]
    devs = [(name, device(pts, unit=u, poll=0.05)) for name, u in (("u1", 1), ("u2", 2), ("gone", 9))]
    p = poller(endpoint(server, Link.RTU), devs, out, timeout=0.3, offline_after=2, reconnect_min=0.5)
    await p.connect()
    async with trio.open_nursery() as nursery:
        await nursery.start(p.run)
        await wait_for(lambda: p.devices["gone"].online is False, what="unit 9 offline")
        n = {d: sum(b.device == d for b in out.batches) for d in ("u1", "u2")}
        await wait_for(lambda: all(sum(b.device == d for b in out.batches) >= n[d] + 5 for d in n),
                       what="units 1 and 2 still polled")
        nursery.cancel_scope.cancel()
    assert out.last("a") == (0x1234, 0)
    gone = [q for b in out.batches if b.device == "gone" for q in b.quality]
    assert gone[0] == Quality.BAD_TIMEOUT and gone[-1] == Quality.BAD_OFFLINE
    assert all(b.quality is None for b in out.batches if b.device != "gone")
    assert p.devices["gone"].counters["skipped_offline"] >= 1      # probed with backoff, not every cycle
    assert p.client.counters["connects"] == 1                      # a dead unit is not a line fault
    await p.aclose()


async def test_polls_follow_fixed_deadlines_without_drift_and_lateness_is_measured(modbus_server):
    server = await modbus_server()
    out = Collect()
    p = poller(endpoint(server, Link.TCP), [("dev", device([{"name": "a", "address": 0}], poll=0.05))], out)
    await p.connect()
    async with trio.open_nursery() as nursery:
        await nursery.start(p.run)
        await wait_for(lambda: len(out.batches) >= 10, what="10 polls")
        nursery.cancel_scope.cancel()
    assert p.lateness.count >= 10 and p.lateness.max >= 0
    assert set(p.diagnostics()["lateness"]) == {"count", "p50_ms", "p99_ms", "max_ms"}
    await p.aclose()


class InstantDevice:
    """An in-process Modbus TCP device for scheduling tests under trio's virtual clock: it answers
    every read of holding registers with zeros after `delay` virtual seconds."""

    abortable = False

    def __init__(self, delay: float = 0.0):
        self.delay = delay
        self.pending = b""

    async def send(self, frame: bytes) -> None:
        count = int.from_bytes(frame[10:12], "big")
        pdu = bytes([3, 2 * count]) + bytes(2 * count)
        self.pending = frame[:4] + (len(pdu) + 1).to_bytes(2, "big") + frame[6:7] + pdu

    async def receive(self) -> bytes:
        await trio.sleep(self.delay)
        data, self.pending = self.pending, b""
        return data

    async def aclose(self) -> None:
        pass


@pytest.mark.parametrize("delay", [0.0, 0.12])
async def test_polls_start_on_a_fixed_grid_of_deadlines(autojump_clock, delay):
    out = Collect()
    interval = 0.05

    async def instant(ep, timeout):
        return InstantDevice(delay)

    p = poller(Endpoint(Link.TCP, "127.0.0.1", 502), [("dev", device([{"name": "a", "address": 0}], poll=interval))],
               out, clock=trio.current_time, open_channel=instant)
    await p.connect()
    async with trio.open_nursery() as nursery:
        start = trio.current_time()
        await nursery.start(p.run)
        await wait_for(lambda: len(out.batches) >= 12, timeout=10, what="12 polls")
        nursery.cancel_scope.cancel()
    dev = p.devices["dev"]
    began = [b.timestamps[0] - delay for b in out.batches[:12]]     # each answer came `delay` after its poll began
    late = list(dev.lateness.samples)[:12]
    grid = [(b - l - start) / interval for b, l in zip(began, late)]
    # every deadline is start + k * interval for a whole k: schedules do not drift
    assert grid == pytest.approx([round(k) for k in grid], abs=1e-6)
    if delay == 0:
        assert [round(k) for k in grid] == list(range(12)) and max(late) == pytest.approx(0, abs=1e-9)
        assert dev.counters["missed_deadlines"] == 0
    else:
        # a poll that takes 0.12 s (2.4 intervals) skips the deadlines it missed entirely and
        # starts the next one late by less than an interval, instead of bunching polls up
        assert all(0 <= l < interval for l in late)
        assert dev.counters["missed_deadlines"] >= 11
        assert all(b2 - b1 >= delay - 1e-9 for b1, b2 in zip(began, began[1:]))
    await p.aclose()


class EchoingRtuDevice:
    """An RS-485 line whose converter echoes every request before unit 1 answers it (RTU framing)."""

    abortable = False

    def __init__(self, garble: bool = False):
        from pymodbus.framer import FramerRTU
        self.rtu = FramerRTU(None)
        self.garble = garble
        self.pending = b""

    async def send(self, frame: bytes) -> None:
        count = int.from_bytes(frame[4:6], "big")
        answer = self.rtu.encode(bytes([3, 2 * count]) + bytes(range(2 * count)), frame[0], 0)
        echo = bytes([frame[0] ^ 0xFF]) + frame[1:] if self.garble else frame
        self.pending = echo + answer

    async def receive(self) -> bytes:
        await trio.lowlevel.checkpoint()
        # the echo and the answer arrive in two pieces, as they would on a line
        data, self.pending = self.pending[:5], self.pending[5:]
        return data

    async def aclose(self) -> None:
        pass


async def test_local_echo_of_an_rs485_converter_is_skipped():
    for garble in (False, True):
        line = EchoingRtuDevice(garble)

        async def open_line(ep, timeout):
            return line

        out = Collect()
        ep = structure({"link": "rtu", "serial": "/dev/null", "local_echo": True,
                        "points": [{"name": "a", "address": 0, "type": "uint32"}]}, ModbusConfig).endpoint()
        p = poller(ep, [("dev", device([{"name": "a", "address": 0, "type": "uint32"}]))], out,
                   open_channel=open_line)
        await p.connect()
        dev = p.devices["dev"]
        batch = await p.poll_once(dev, dev.groups[0][1])
        if garble:
            assert list(batch.quality) == [Quality.BAD_DECODE] and "local echo" in dev.last_error
        else:
            assert batch.values == [0x00010203] and batch.quality is None
        await p.aclose()


# --- writes -----------------------------------------------------------------------

WRITABLE = [
    {"name": "w_u16", "address": 66, "type": "uint16", "writable": True},
    {"name": "w_i32", "address": 67, "type": "int32", "order": "CDAB", "writable": True},
    {"name": "w_f32", "address": 69, "type": "float32", "order": "BADC", "writable": True},
    {"name": "w_f64", "address": 71, "type": "float64", "order": "DCBA", "writable": True},
    {"name": "w_u64", "address": 75, "type": "uint64", "writable": True},
    {"name": "w_str", "address": 79, "type": "string", "length": 4, "writable": True},
    {"name": "w_scaled", "address": 83, "type": "int16", "scale": 0.1, "offset": -40, "writable": True},
    {"name": "w_bit2", "address": 84, "type": "bool", "bit": 2, "writable": True},
    {"name": "w_bit9", "address": 84, "type": "bool", "bit": 9, "writable": True},
    {"name": "w_coil", "address": 20, "table": "coil", "type": "bool", "writable": True},
    {"name": "ro", "address": 0, "type": "uint16"},
]


@pytest.mark.parametrize("link", [Link.TCP, Link.RTU_OVER_TCP], ids=lambda l: l.value)
async def test_writes_encode_type_and_order_and_verify_by_reading_back(modbus_server, link):
    server = await modbus_server(rtu_tcp=True)
    out = Collect()
    p = poller(endpoint(server, link), [("dev", device(WRITABLE))], out)
    await p.connect()
    cases = {"w_u16": 4321, "w_i32": -123456, "w_f32": 2.5, "w_f64": -1234.5, "w_u64": 2**64 - 2,
             "w_str": "SN-0042", "w_scaled": 21.5, "w_bit2": True, "w_bit9": True, "w_coil": True}
    for name, value in cases.items():
        result = await p.write("dev", name, value, verify=True)
        assert result.status == "ack", (name, result)
        assert result.value == pytest.approx(value) if isinstance(value, float) else result.value == value
    result = await p.write("dev", "w_bit2", False, verify=True)
    assert result.ok
    dev = p.devices["dev"]
    batch = await p.poll_once(dev, dev.groups[0][1])
    got = dict(zip(batch.points, batch.values))
    assert {k: got[k] for k in cases} == {**cases, "w_bit2": False, "w_scaled": pytest.approx(21.5)}
    # the bit write kept the register's other bits
    assert (await p.client.read(1, Table.HOLDING, 84, 1))[0] == 1 << 9
    await p.aclose()


async def test_bad_writes_are_refused_with_the_reason(modbus_server):
    server = await modbus_server()
    out = Collect()
    in_gap = {"name": "in_gap", "address": 99, "type": "uint32", "writable": True}   # 99 exists, 100 does not
    p = poller(endpoint(server, Link.TCP), [("dev", device(WRITABLE + [in_gap], gaps=[]))], out, timeout=0.5)
    await p.connect()
    assert (await p.write("dev", "ro", 1)).detail == "point 'ro' is not writable (writable: false)"
    assert "no point 'nope'" in (await p.write("dev", "nope", 1)).detail
    assert "no device 'other'" in (await p.write("other", "w_u16", 1)).detail
    r = await p.write("dev", "w_u16", 70000)
    assert r.status == "nack" and "out of range for uint16" in r.detail
    r = await p.write("dev", "in_gap", 5)
    assert r.status == "nack" and r.detail == "device refused: exception 2 (illegal data address) to function 16"
    await server.command("stuck on")
    # function 16 acknowledges address and count only: the read-back catches the write that did not take
    r = await p.write("dev", "w_i32", -123456, verify=True)
    assert r.status == "nack" and r.detail == "read back 0 after writing -123456" and r.value == 0
    assert (await p.write("dev", "w_i32", -123456)).status == "ack"   # without verify, the ack is all there is
    # function 6 echoes the value: a different echo is refused even without verify
    r = await p.write("dev", "w_u16", 4321)
    assert r.status == "nack" and "echoed address 66 value [0], expected 66 4321" in r.detail
    await server.command("stuck off")
    await server.command("delay 2")
    r = await p.write("dev", "w_u16", 5)
    assert r.status == "timeout" and "no answer from unit 1 within 0.5 s" in r.detail
    await p.aclose()
