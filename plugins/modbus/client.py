"""A Modbus client on a trio byte stream, with pymodbus's framers and PDU codec.

One request at a time per stream (what serial lines require and most TCP
devices expect). Transaction ids match answers to requests on TCP; still,
after a timeout a TCP stream is closed (`drop_on_timeout`), because a late
answer can come back under the wrong id (pymodbus's own server stamps a late
answer with the newest request's id), and a fresh connection is cheap.
Every failure is a `ModbusError` carrying the reading quality it implies;
`poller.py` turns them into per-point qualities, device states and counters.
"""

from __future__ import annotations

import math
import struct
from collections import Counter
from typing import Any, Awaitable, Callable, Sequence

import trio
from pymodbus.exceptions import ModbusException
from pymodbus.framer import FramerRTU, FramerSocket
from pymodbus.pdu import DecodePDU, ExceptionResponse
from pymodbus.pdu.bit_message import (
    ReadCoilsRequest, ReadDiscreteInputsRequest, WriteMultipleCoilsRequest, WriteSingleCoilRequest,
)
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersRequest, ReadInputRegistersRequest, WriteMultipleRegistersRequest,
    WriteSingleRegisterRequest,
)

from sitegate.model import Quality

from .registermap import Table

EXCEPTION_NAMES = {
    1: "illegal function", 2: "illegal data address", 3: "illegal data value", 4: "server device failure",
    5: "acknowledge", 6: "server device busy", 7: "negative acknowledge", 8: "memory parity error",
    10: "gateway path unavailable", 11: "gateway target device failed to respond",
}

_READ_PDU = {
    Table.COIL: ReadCoilsRequest, Table.DISCRETE: ReadDiscreteInputsRequest,
    Table.HOLDING: ReadHoldingRegistersRequest, Table.INPUT: ReadInputRegistersRequest,
}


class ModbusError(Exception):
    """A request that did not produce a usable answer; `quality` is what the points it covered get."""

    quality = Quality.BAD
    kind = "error"

    @property
    def reason(self) -> str:
        return str(self)


class ModbusTimeout(ModbusError):
    quality = Quality.BAD_TIMEOUT
    kind = "timeout"


class ModbusConnectionError(ModbusError):
    quality = Quality.BAD_COMM
    kind = "connection"


class ModbusDecodeError(ModbusError):
    quality = Quality.BAD_DECODE
    kind = "malformed"


class ModbusExceptionResponse(ModbusError):
    """The device answered with an exception code (it is alive, but refused the request)."""

    quality = Quality.BAD_DEVICE
    kind = "exception"

    def __init__(self, function: int, code: int):
        self.function = function
        self.code = code
        super().__init__(f"exception {code} ({EXCEPTION_NAMES.get(code, 'unknown')}) to function {function}")


class _Aborted(Exception):
    """The request in flight was aborted by `watch_timeouts` (its deadline passed)."""


class ModbusClient:
    """Requests and answers over one stream; reconnecting is the caller's choice (`connect`).

    `counters` counts requests, answers and each kind of fault, for diagnostics.
    """

    def __init__(self, open_stream: Callable[[], Awaitable[Any]], *, framing: str = "socket",
                 timeout: float = 1.0, frame_gap: float = 0.0, name: str = "modbus",
                 drop_on_timeout: bool | None = None, local_echo: bool = False):
        self._open = open_stream
        self.framing = framing
        self.timeout = timeout
        self.frame_gap = frame_gap
        self.name = name
        decoder = DecodePDU(False)
        self._decoder = decoder
        self._framer = FramerSocket(decoder) if framing == "socket" else FramerRTU(decoder)
        self._rtu = framing != "socket"
        self.drop_on_timeout = (not self._rtu) if drop_on_timeout is None else drop_on_timeout
        self.local_echo = local_echo   # RS-485 adapters that hear their own transmission
        self._stream: Any = None            # a transport channel: send, receive, aclose
        self._lock = trio.Lock()
        self._buf = bytearray()
        self._tid = 0
        self._seq = 0                # requests sent (for `watch_timeouts`)
        self._deadline = math.inf    # of the request in flight, when `watch_timeouts` runs
        self._aborted = -1
        self._watching = False
        self._watch_until = math.inf   # when `watch_timeouts` wakes next
        self._last_rx = 0.0
        self._dirty = False          # RTU: bytes of an abandoned answer may still arrive
        self._payloads: dict[tuple[int, int, int], bytes] = {}
        self._unpackers: dict[int, Callable[..., tuple[int, ...]]] = {}
        self.counters: Counter[str] = Counter()

    # --- connection --------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._stream is not None

    async def connect(self) -> None:
        """(Re)open the stream; raises ModbusConnectionError saying why it could not."""
        async with self._lock:      # never pull the stream from under a request in flight
            await self._connect()

    async def _connect(self) -> None:
        await self.close()
        try:
            self._stream = await self._open()
        except (OSError, trio.TooSlowError) as exc:
            self.counters["connect_failures"] += 1
            raise ModbusConnectionError(f"cannot connect to {self.name}: {_why(exc)}") from None
        self.counters["connects"] += 1
        self._buf.clear()
        self._dirty = False

    async def close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            with trio.CancelScope(shield=True):
                try:
                    await stream.aclose()
                except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
                    pass

    async def _drop(self, why: str) -> ModbusConnectionError:
        self.counters["connection_lost"] += 1
        await self.close()
        return ModbusConnectionError(f"connection to {self.name} lost: {why}")

    async def watch_timeouts(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Enforce request timeouts on TCP by closing the socket when a deadline passes.

        Run it in a nursery beside the requests (`poller.py` does). Why: a trio
        cancel scope per request cost 35-65 us of CPU per read here, a third of
        the client's whole cost, while a timeout is rare. With this task running, a
        request only writes its deadline; the task sleeps until the deadline of the
        request in flight (or one timeout when idle) and aborts the socket only if
        that request is still waiting, which is what a TCP timeout does anyway
        (`drop_on_timeout`). Serial lines keep a cancel scope per request.
        """
        self._watching = True
        task_status.started()
        try:
            while True:
                now = trio.current_time()
                deadline = self._deadline
                if deadline <= now:
                    self._aborted = self._seq
                    self._deadline = math.inf
                    stream, self._stream = self._stream, None
                    if stream is not None:
                        stream.abort()
                    continue
                self._watch_until = min(deadline, now + self.timeout)
                await trio.sleep_until(self._watch_until)
        finally:
            self._watching = False

    # --- one transaction ------------------------------------------------------------
    async def request(self, unit: int, payload: bytes, timeout: float | None = None, *, raw: bool = False) -> Any:
        """Send one PDU (function code + data) to `unit`; return the decoded answer PDU
        (with `raw`, the answer's PDU bytes: function code first, after the exception check).

        Raises ModbusTimeout, ModbusConnectionError, ModbusDecodeError or
        ModbusExceptionResponse. Never leaves a half-read answer behind: TCP answers
        carry the transaction id, RTU lines are flushed after an abandoned request.
        """
        lock = self._lock
        try:
            # Uncontended (the usual case): no extra trip through the scheduler; the
            # send and receive below are the checkpoints.
            lock.acquire_nowait()
        except trio.WouldBlock:
            await lock.acquire()
        try:
            if self._stream is None:
                raise ModbusConnectionError(f"not connected to {self.name}")
            self.counters["requests"] += 1
            limit = self.timeout if timeout is None else timeout
            deadline = trio.current_time() + limit
            self._aborted = -1
            if (self._watching and deadline >= self._watch_until and self.drop_on_timeout
                    and getattr(self._stream, "abortable", False)):
                # Cheap path: `watch_timeouts` (awake by then) aborts the socket if this deadline passes.
                self._seq += 1
                self._deadline = deadline
                try:
                    return await self._transact(unit, payload, raw)
                except _Aborted:
                    pass
                finally:
                    self._deadline = math.inf
            else:
                with trio.move_on_after(limit):
                    return await self._transact(unit, payload, raw)
            self.counters["timeouts"] += 1
            if self.drop_on_timeout:
                self.counters["dropped_after_timeout"] += 1
                await self.close()
            elif self._rtu:
                self._dirty = True
            raise ModbusTimeout(f"no answer from unit {unit} within {limit:g} s")
        finally:
            lock.release()

    async def _transact(self, unit: int, payload: bytes, raw: bool = False) -> Any:
        stream = self._stream
        if self._rtu:
            await self._rtu_quiet()
        self._tid = (self._tid + 1) & 0xFFFF
        tid = self._tid
        frame = self._framer.encode(payload, unit, tid)
        buf = self._buf
        try:
            await stream.send(frame)
            if self.local_echo:
                await self._skip_echo(stream, frame)
            while True:
                used, dev_id, rx_tid, pdu_bytes = self._framer.decode(buf) if buf else (0, 0, 0, b"")
                if not used:
                    if not self._rtu and len(buf) >= 4 and buf[2:4] != b"\x00\x00":
                        # Not MBAP: there is no way to find the next frame boundary on this stream.
                        self.counters["malformed"] += 1
                        raise await self._drop_decode("answer is not Modbus TCP (protocol id is not 0)")
                    data = await stream.receive()
                    if not data:
                        raise await self._drop("closed by the device")
                    buf += data
                    continue
                del buf[:used]
                if not pdu_bytes:
                    self.counters["malformed"] += 1
                    raise ModbusDecodeError(f"bad frame from unit {unit} (CRC or length)")
                if (not self._rtu and rx_tid != tid) or dev_id != unit:
                    # An answer to an earlier request that timed out, or another unit's: not ours.
                    self.counters["stale_answers"] += 1
                    continue
                break
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            if self._aborted == self._seq:
                raise _Aborted() from None
            raise await self._drop(_why(exc)) from None
        finally:
            if self._rtu:
                self._last_rx = trio.current_time()
        fc = payload[0]
        if pdu_bytes[0] == fc | 0x80 and len(pdu_bytes) >= 2:
            self.counters["exceptions"] += 1
            self.counters[f"exception_{pdu_bytes[1]}"] += 1
            raise ModbusExceptionResponse(fc, pdu_bytes[1])
        if pdu_bytes[0] != fc:
            self.counters["malformed"] += 1
            raise ModbusDecodeError(f"answer from unit {unit} has function {pdu_bytes[0]}, expected {fc}")
        if raw:
            self.counters["answers"] += 1
            return pdu_bytes
        pdu = self._decode(pdu_bytes)
        if pdu is None:
            self.counters["malformed"] += 1
            raise ModbusDecodeError(f"answer from unit {unit} to function {fc} cannot be decoded "
                                    f"({len(pdu_bytes)} bytes: {bytes(pdu_bytes[:16]).hex()})")
        self.counters["answers"] += 1
        return pdu

    async def _skip_echo(self, stream: Any, frame: bytes) -> None:
        buf = self._buf
        while len(buf) < len(frame):
            data = await stream.receive()
            if not data:
                raise await self._drop("closed by the device")
            buf += data
        if buf[:len(frame)] != frame:
            self.counters["malformed"] += 1
            self._dirty = True
            raise ModbusDecodeError("the local echo of the request came back garbled (local_echo: true)")
        del buf[:len(frame)]

    def _decode(self, pdu_bytes: bytes) -> Any:
        # pymodbus's answer classes decode the data; DecodePDU.decode would do the same plus a
        # debug log line whose arguments it formats on every call (a tenth of a request's CPU).
        cls = self._decoder.pdu_table.get(pdu_bytes[0], (None, None))[1]
        if cls is None or cls.sub_function_code >= 0:
            pdu = self._decoder.decode(pdu_bytes)
            return None if isinstance(pdu, ExceptionResponse) else pdu
        pdu = cls()
        try:
            pdu.decode(pdu_bytes[1:])
        except (ModbusException, ValueError, IndexError, struct.error):
            return None
        return pdu

    async def _drop_decode(self, why: str) -> ModbusDecodeError:
        await self._drop(why)
        return ModbusDecodeError(why)

    async def _rtu_quiet(self) -> None:
        # The line must be silent 3.5 characters between frames; after an abandoned
        # request, swallow what the slow device still sends so it is not taken for the next answer.
        if self.frame_gap:
            await trio.sleep_until(self._last_rx + self.frame_gap)
        if self._dirty or self._buf:
            with trio.move_on_after(max(self.frame_gap * 4, 0.01)):
                while True:
                    if not await self._stream.receive():
                        break
            self._buf.clear()
            self._dirty = False

    # --- reads and writes -------------------------------------------------------------
    def _read_payload(self, table: Table, address: int, count: int) -> bytes:
        key = (table.read_function, address, count)
        payload = self._payloads.get(key)
        if payload is None:
            pdu = _READ_PDU[table](address=address, count=count)
            payload = bytes([pdu.function_code]) + pdu.encode()
            if len(self._payloads) < 4096:
                self._payloads[key] = payload
        return payload

    async def read(self, unit: int, table: Table, address: int, count: int,
                   timeout: float | None = None) -> Sequence[int] | Sequence[bool]:
        """`count` registers (ints) or bits (bools) of `table` from `address`."""
        if table.is_bits:
            pdu = await self.request(unit, self._read_payload(table, address, count), timeout)
            bits = pdu.bits
            if len(bits) < count:
                self.counters["malformed"] += 1
                raise ModbusDecodeError(f"short answer from unit {unit}: {len(bits)} bits for a read of {count}")
            return bits[:count]
        # A register answer is a byte count and big-endian words: one struct call unpacks them all
        # (pymodbus's response class unpacks word by word: 11 us for 10 registers, ~100 us for 125).
        data = await self.request(unit, self._read_payload(table, address, count), timeout, raw=True)
        if len(data) < 2 or data[1] != 2 * count or len(data) != 2 + 2 * count:
            self.counters["malformed"] += 1
            got = (len(data) - 2) // 2 if len(data) >= 2 else 0
            raise ModbusDecodeError(f"short answer from unit {unit}: {got} registers for a read of {count}")
        unpack = self._unpackers.get(count)
        if unpack is None:
            unpack = self._unpackers[count] = struct.Struct(f">{count}H").unpack_from
        return unpack(data, 2)

    async def write_registers(self, unit: int, address: int, values: Sequence[int], *,
                              single: bool | None = None, timeout: float | None = None) -> None:
        """Write holding registers (function 6 for one register unless `single` is False, else 16)."""
        if single is None:
            single = len(values) == 1
        if single:
            if len(values) != 1:
                raise ValueError("function 6 writes exactly one register")
            req = WriteSingleRegisterRequest(address=address, registers=[values[0]])
            payload = bytes([6]) + req.encode()
            pdu = await self.request(unit, payload, timeout)
            if (pdu.address, list(pdu.registers)[:1]) != (address, [values[0]]):
                self.counters["malformed"] += 1
                raise ModbusDecodeError(f"unit {unit} echoed address {pdu.address} value {pdu.registers}, "
                                        f"expected {address} {values[0]}")
            return
        req = WriteMultipleRegistersRequest(address=address, registers=list(values))
        pdu = await self.request(unit, bytes([16]) + req.encode(), timeout)
        if (pdu.address, pdu.count) != (address, len(values)):
            self.counters["malformed"] += 1
            raise ModbusDecodeError(f"unit {unit} acknowledged {pdu.count} registers at {pdu.address}, "
                                    f"expected {len(values)} at {address}")

    async def write_coils(self, unit: int, address: int, values: Sequence[bool], *,
                          timeout: float | None = None) -> None:
        """Write coils (function 5 for one, 15 for several)."""
        if len(values) == 1:
            req = WriteSingleCoilRequest(address=address, bits=[bool(values[0])])
            pdu = await self.request(unit, bytes([5]) + req.encode(), timeout)
            if pdu.address != address or bool(pdu.bits[0]) != bool(values[0]):
                self.counters["malformed"] += 1
                raise ModbusDecodeError(f"unit {unit} echoed coil {pdu.address}={pdu.bits[:1]}, "
                                        f"expected {address}={bool(values[0])}")
            return
        req = WriteMultipleCoilsRequest(address=address, bits=[bool(v) for v in values])
        pdu = await self.request(unit, bytes([15]) + req.encode(), timeout)
        if (pdu.address, pdu.count) != (address, len(values)):
            self.counters["malformed"] += 1
            raise ModbusDecodeError(f"unit {unit} acknowledged {pdu.count} coils at {pdu.address}, "
                                    f"expected {len(values)} at {address}")


def _why(exc: BaseException) -> str:
    if isinstance(exc, trio.TooSlowError):
        return "connect timed out"
    text = getattr(exc, "strerror", None) or str(exc)
    return text or type(exc).__name__

