"""Polling the devices behind one Modbus link on fixed deadlines, and writing to them.

A `LinkPoller` owns one `client.ModbusClient` (one TCP connection or serial
line), the devices (unit ids) behind it and their read plans from
`registermap.plan_reads`. It turns answers into `Batch`es, and faults into
per-point qualities, device online/offline states, reconnects with backoff and
counters. `__init__.py` runs one per entry in the entry's nursery.
"""

from __future__ import annotations

import math
import random
import struct
import time
from collections import Counter, deque
from typing import Any, Awaitable, Callable, Sequence

import trio

from sitegate.model import Batch, CommandResult, Quality, Severity

from .client import (
    ModbusClient, ModbusConnectionError, ModbusError, ModbusExceptionResponse, ModbusTimeout,
)
from .config import DeviceConfig
from .registermap import (
    DataType, ReadRequest, Table, decode, decoder, encode, group_by_interval, plan_reads, set_bit,
)
from .transport import Endpoint, Link, open_stream


class Lateness:
    """How late polls started after their deadline (seconds): the latest samples, plus count and max."""

    def __init__(self, keep: int = 200_000):
        self.samples: deque[float] = deque(maxlen=keep)
        self.count = 0
        self.max = 0.0

    def add(self, value: float) -> None:
        self.samples.append(value)
        self.count += 1
        if value > self.max:
            self.max = value

    def percentile(self, q: float) -> float:
        if not self.samples:
            return 0.0
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]

    def summary(self) -> dict[str, float]:
        return {"count": self.count, "p50_ms": self.percentile(50) * 1000, "p99_ms": self.percentile(99) * 1000,
                "max_ms": self.max * 1000}


def _has_filler(req: ReadRequest) -> bool:
    """Whether a read includes addresses that no point of it uses."""
    used = set()
    for p, off in req.points:
        used.update(range(off, off + p.width))
    return len(used) < req.count


class DeviceRuntime:
    """A device's read plan and what the poller knows about it right now."""

    def __init__(self, name: str, cfg: DeviceConfig):
        self.name = name
        self.cfg = cfg
        self.unit = cfg.unit
        self.points = {p.name: p for p in cfg.points}
        self.groups: list[tuple[float, list[ReadRequest]]] = [
            (interval, plan_reads(points, max_gap=cfg.max_gap, max_registers=cfg.max_registers,
                                  max_bits=cfg.max_bits, gaps=cfg.gaps))
            for interval, points in group_by_interval(cfg.points, cfg.poll).items()
        ]
        self.decoders = {req: [(p.name, decoder(p), off) for p, off in req.points]
                         for _, reqs in self.groups for req in reqs}
        self.online: bool | None = None       # None until the first poll
        self.failures = 0                     # consecutive polls without any answer
        self.last_error = ""
        self.next_probe = 0.0                 # trio time before which an offline device is left alone
        self.probe_delay = 0.0
        self.published_quality: dict[str, int] = {}
        self.counters: Counter[str] = Counter()
        self.lateness = Lateness(keep=10_000)


PublishFn = Callable[[Batch], Awaitable[Any]]


class LinkPoller:
    """Polls every device behind one link; see the module docstring."""

    def __init__(self, endpoint: Endpoint, devices: Sequence[tuple[str, DeviceConfig]], publish: PublishFn, *,
                 timeout: float = 1.0, connect_timeout: float = 3.0, offline_after: int = 3,
                 reconnect_min: float = 0.5, reconnect_max: float = 30.0,
                 emit: Callable[..., None] | None = None, clock: Callable[[], float] = time.time,
                 source: str = "", lateness: Lateness | None = None, stagger: bool = True, phase: float = 0.0,
                 open_channel: Callable[[Endpoint, float], Awaitable[Any]] = open_stream):
        self.endpoint = endpoint
        self.devices = {name: DeviceRuntime(name, cfg) for name, cfg in devices}
        self.publish = publish
        self.offline_after = offline_after
        self.reconnect_min = reconnect_min
        self.reconnect_max = reconnect_max
        self.emit = emit or (lambda *a, **k: None)
        self.clock = clock
        self.source = source
        self.lateness = lateness or Lateness()
        self.stagger = stagger
        self.phase = phase                   # seconds to add to every first deadline (spreads many links)
        self.client = ModbusClient(lambda: open_channel(endpoint, connect_timeout), framing=endpoint.framing,
                                   timeout=timeout, frame_gap=endpoint.frame_gap, name=endpoint.describe(),
                                   # RTU frames carry no transaction id: over TCP, a fresh connection is
                                   # the only sure way a late answer is not taken for the next one.
                                   drop_on_timeout=endpoint.link is not Link.RTU,
                                   local_echo=endpoint.local_echo)
        self._reconnect_needed = trio.Event()
        self.counters: Counter[str] = Counter()
        self._rng = random.Random()

    # --- lifecycle ----------------------------------------------------------------------
    async def connect(self) -> None:
        """First connection; raises ModbusConnectionError (the entry is then "not ready")."""
        await self.client.connect()

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Poll until cancelled: one task per device and poll interval, plus the reconnector."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._reconnector, name=f"{self.endpoint.describe()}:reconnect")
            await nursery.start(self.client.watch_timeouts)
            start = trio.current_time() + self.phase
            devices = list(self.devices.values())
            for i, dev in enumerate(devices):
                for interval, requests in dev.groups:
                    # Spread devices over the interval so a line is not asked everything at once.
                    phase = (i / len(devices)) * min(interval, 1.0) if self.stagger else 0.0
                    nursery.start_soon(self._poll_loop, dev, interval, requests, start + phase,
                                       name=f"{dev.name}:poll:{interval:g}s")
            task_status.started()

    async def aclose(self) -> None:
        await self.client.close()

    # --- polling ------------------------------------------------------------------------
    async def _poll_loop(self, dev: DeviceRuntime, interval: float, requests: list[ReadRequest],
                         deadline: float) -> None:
        while True:
            await trio.sleep_until(deadline)
            late = trio.current_time() - deadline
            self.lateness.add(late)
            dev.lateness.add(late)
            await self.poll_once(dev, requests)
            deadline += interval
            behind = trio.current_time() - deadline
            if behind >= interval:
                # The poll (or the pipeline's backpressure) took longer than an interval: skip the
                # missed deadlines instead of bunching them up, and count them.
                missed = int(behind // interval)
                deadline += missed * interval
                dev.counters["missed_deadlines"] += missed

    async def poll_once(self, dev: DeviceRuntime, requests: Sequence[ReadRequest]) -> Batch | None:
        """Read `requests` from `dev` once and publish what came back; returns the batch (None if nothing)."""
        if dev.online is False and trio.current_time() < dev.next_probe:
            dev.counters["skipped_offline"] += 1
            return None
        dev.counters["polls"] += 1
        names, values, stamps, quality, answered, silent_error = await self.read_now(dev, requests)
        self._update_state(dev, answered, silent_error)
        return await self._publish(dev, names, values, stamps, quality)

    async def read_now(self, dev: DeviceRuntime, requests: Sequence[ReadRequest]):
        """Send `requests` and decode the answers, without publishing or changing the device state.

        Returns (names, values, timestamps, qualities, answered, silent_error): `answered`
        is whether the device answered anything, `silent_error` the timeout or connection
        error that cut the cycle short (None if there was none).
        """
        names: list[str] = []
        values: list[Any] = []
        stamps: list[float] = []
        quality: list[int] = []
        answered = False
        silent_error: ModbusError | None = None
        refused: list[ReadRequest] = []
        for req in requests:
            if silent_error is not None:
                # The device did not answer this cycle: do not spend another timeout on it.
                self._fail_points(dev, req, silent_error, names, values, stamps, quality)
                continue
            try:
                words = await self.client.read(dev.unit, req.table, req.address, req.count)
            except ModbusError as exc:
                self._count_fault(dev, exc)
                if isinstance(exc, (ModbusTimeout, ModbusConnectionError)):
                    silent_error = exc
                else:
                    answered = True   # an exception or a garbled answer: the device is there
                    if isinstance(exc, ModbusExceptionResponse) and exc.code == 2 and _has_filler(req):
                        refused.append(req)
                self._fail_points(dev, req, exc, names, values, stamps, quality)
                continue
            answered = True
            ts = self.clock()
            for name, fn, off in dev.decoders[req]:
                try:
                    value = fn(words, off)
                    q = Quality.GOOD
                except (ValueError, IndexError, UnicodeDecodeError, struct.error):
                    value, q = None, Quality.BAD_DECODE
                    dev.counters["decode_errors"] += 1
                names.append(name)
                values.append(value)
                stamps.append(ts)
                quality.append(q)
        if refused:
            self._split(dev, refused)
        return names, values, stamps, quality, answered, silent_error

    def _split(self, dev: DeviceRuntime, refused: list[ReadRequest]) -> None:
        # A merged read that included unused addresses was refused (illegal data address):
        # the device has an undeclared gap. Read those points without filler from now on.
        for req in refused:
            exact = plan_reads([p for p, _ in req.points], max_gap=0, max_registers=dev.cfg.max_registers,
                               max_bits=dev.cfg.max_bits)
            for _, plan in dev.groups:     # the lists the poll loops iterate: changed in place
                if req in plan:
                    i = plan.index(req)
                    plan[i:i + 1] = exact
            for r in exact:
                dev.decoders[r] = [(p.name, decoder(p), off) for p, off in r.points]
            dev.counters["reads_split"] += 1
            self.emit("modbus.read_split", device=dev.name, severity=Severity.WARNING,
                      message=f"{dev.name} refused {req.table} {req.address}..{req.address + req.count - 1}; "
                              f"reading its points in {len(exact)} reads from now on. Declare the hole under "
                              f"gaps: to plan it from the start.",
                      table=str(req.table), start=req.address, count=req.count, reads=len(exact))

    def _fail_points(self, dev: DeviceRuntime, req: ReadRequest, exc: ModbusError, names: list, values: list,
                     stamps: list, quality: list) -> None:
        ts = self.clock()
        for point, _ in req.points:
            names.append(point.name)
            values.append(None)
            stamps.append(ts)
            quality.append(int(exc.quality))
        dev.last_error = exc.reason

    def _count_fault(self, dev: DeviceRuntime, exc: ModbusError) -> None:
        dev.counters[f"faults_{exc.kind}"] += 1
        self.counters[f"faults_{exc.kind}"] += 1
        if isinstance(exc, ModbusExceptionResponse):
            dev.counters[f"exception_{exc.code}"] += 1
        if isinstance(exc, ModbusConnectionError) or not self.client.connected:
            # A dropped connection, or one the client closed after a timeout: connect again now.
            self._reconnect_needed.set()

    def _update_state(self, dev: DeviceRuntime, answered: bool, error: ModbusError | None) -> None:
        if answered:
            dev.failures = 0
            dev.probe_delay = 0.0
            if dev.online is not True:
                was = dev.online
                dev.online = True
                if was is False:
                    dev.counters["back_online"] += 1
                    self.emit("modbus.device_online", device=dev.name, message=f"{dev.name} answers again")
            return
        dev.failures += 1
        dev.counters["poll_failures"] += 1
        if dev.online is not False and dev.failures >= self.offline_after:
            dev.online = False
            dev.counters["went_offline"] += 1
            self.emit("modbus.device_offline", device=dev.name, severity=Severity.WARNING,
                      message=f"{dev.name} offline after {dev.failures} unanswered polls: {dev.last_error}",
                      reason=dev.last_error, failures=dev.failures)
        if dev.online is False:
            # Probe an offline device with backoff: it must not eat a timeout every cycle.
            dev.probe_delay = min(max(dev.probe_delay * 2, self.reconnect_min), self.reconnect_max)
            dev.next_probe = trio.current_time() + dev.probe_delay * (1 + 0.1 * self._rng.random())

    async def _publish(self, dev: DeviceRuntime, names: list[str], values: list[Any], stamps: list[float],
                       quality: list[int]) -> Batch | None:
        if dev.online is False:
            quality = [int(Quality.BAD_OFFLINE) if q >= 0x80 else q for q in quality]
        keep = None
        if any(quality):
            # Bad readings go out when a point's quality changes, not every cycle: the
            # reason is visible at once, and a dead device does not flood the pipeline.
            keep = []
            last = dev.published_quality
            for i, (name, q) in enumerate(zip(names, quality)):
                if q == 0 or last.get(name) != q:
                    keep.append(i)
                last[name] = q
        elif dev.published_quality:
            dev.published_quality.clear()
        if keep is not None:
            if len(keep) != len(names):
                names = [names[i] for i in keep]
                values = [values[i] for i in keep]
                stamps = [stamps[i] for i in keep]
                quality = [quality[i] for i in keep]
            if not names:
                return None
        batch = Batch(dev.name, names, values, stamps, quality if any(quality) else None, self.source)
        dev.counters["readings"] += len(names)
        await self.publish(batch)
        return batch

    # --- reconnecting -------------------------------------------------------------------
    async def _reconnector(self) -> None:
        delay = self.reconnect_min
        while True:
            await self._reconnect_needed.wait()
            self._reconnect_needed = trio.Event()
            while True:
                try:
                    await self.client.connect()
                except ModbusConnectionError as exc:
                    self.counters["reconnect_failures"] += 1
                    self.emit("modbus.reconnect_failed", message=str(exc), retry_in=delay)
                    await trio.sleep(delay * (1 + 0.2 * self._rng.random()))
                    delay = min(delay * 2, self.reconnect_max)
                    continue
                self.counters["reconnects"] += 1
                delay = self.reconnect_min
                for dev in self.devices.values():
                    dev.next_probe = 0.0   # probe offline devices now that the line is back
                self.emit("modbus.reconnected", message=f"reconnected to {self.endpoint.describe()}")
                break

    # --- writing ------------------------------------------------------------------------
    async def write(self, device: str, point_name: str, value: Any, *, verify: bool = False,
                    timeout: float | None = None) -> CommandResult:
        """Write `value` to a point: ack (with the value the device holds), nack saying why, or timeout."""
        dev = self.devices.get(device)
        if dev is None:
            return CommandResult("nack", f"no device {device!r} on {self.endpoint.describe()}")
        point = dev.points.get(point_name)
        if point is None:
            return CommandResult("nack", f"device {device!r} has no point {point_name!r}")
        if not point.writable:
            return CommandResult("nack", f"point {point_name!r} is not writable (writable: false)")
        self.counters["writes"] += 1
        try:
            if point.table is Table.COIL:
                words: list = encode(point, value)
                await self.client.write_coils(dev.unit, point.address, words, timeout=timeout)
            elif point.type is DataType.BOOL:
                # One bit of a register: read, modify, write (function 6 keeps the other bits as read).
                (current,) = await self.client.read(dev.unit, point.table, point.address, 1, timeout=timeout)
                words = [set_bit(point, current, value)]
                await self.client.write_registers(dev.unit, point.address, words,
                                                  single=not dev.cfg.write_multiple, timeout=timeout)
            else:
                words = encode(point, value)
                single = len(words) == 1 and not dev.cfg.write_multiple
                await self.client.write_registers(dev.unit, point.address, words, single=single, timeout=timeout)
            result = value
            if verify:
                back = await self.client.read(dev.unit, point.table, point.address, point.width, timeout=timeout)
                if point.type is DataType.BOOL and not point.table.is_bits:
                    ok = bool((back[0] >> point.bit) & 1) == bool(value)   # other bits may move meanwhile
                else:
                    ok = list(back) == list(words)
                result = decode(point, back)
                if not ok:
                    self.counters["write_verify_failed"] += 1
                    return CommandResult("nack", f"read back {result!r} after writing {value!r}", result)
        except ValueError as exc:
            self.counters["writes_refused"] += 1
            return CommandResult("nack", str(exc))
        except ModbusTimeout as exc:
            self._count_fault(dev, exc)
            return CommandResult("timeout", exc.reason)
        except ModbusExceptionResponse as exc:
            self._count_fault(dev, exc)
            return CommandResult("nack", f"device refused: {exc.reason}")
        except ModbusError as exc:
            self._count_fault(dev, exc)
            return CommandResult("nack", exc.reason)
        self.counters["writes_acked"] += 1
        return CommandResult("ack", value=result)

    # --- diagnostics --------------------------------------------------------------------
    def diagnostics(self) -> dict[str, Any]:
        return {
            "link": self.endpoint.describe(),
            "connected": self.client.connected,
            "client": dict(self.client.counters),
            "counters": dict(self.counters),
            "lateness": self.lateness.summary(),
            "devices": {
                name: {"unit": d.unit, "online": d.online, "failures": d.failures, "last_error": d.last_error,
                       "reads_per_cycle": {f"{iv:g}s": len(reqs) for iv, reqs in d.groups},
                       "counters": dict(d.counters), "lateness": d.lateness.summary()}
                for name, d in self.devices.items()
            },
        }

