"""A pymodbus server in its own process, serving the layout of layout.py: the peer of the Modbus tests.

    python modbus_server.py --port P [--rtu-tcp-port Q] [--serial] [--units 1,2] [--plain N]

Prints "READY ..." once listening (with "serial=/dev/pts/N" when --serial: a
pseudo-terminal the client opens as its serial line) and exits when stdin
closes, so it never outlives the test that started it. Commands on stdin,
one per line, for fault injection and counting: `delay S`, `exception CODE`
(0 = off), `short on|off` (TCP answers one register short), `garbage on|off`
(TCP protocol id not 0), `corrupt on|off` (RTU CRC broken), `stuck on|off`
(register writes acknowledged but stored as 0), `stats` (prints
"STATS {json}"), `reset`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import threading
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from layout import COILS, DISCRETE, HOLDING, INPUT  # noqa: E402
from pymodbus.constants import ExcCodes  # noqa: E402
from pymodbus.framer import FramerType  # noqa: E402
from pymodbus.server import ModbusSerialServer, ModbusTcpServer  # noqa: E402
from pymodbus.simulator import DataType, SimData, SimDevice  # noqa: E402


class Faults:
    def __init__(self):
        self.delay = 0.0
        self.exception = 0
        self.short = False
        self.garbage = False     # TCP: answers with a protocol id that is not 0
        self.corrupt = False     # RTU: answers with a broken CRC
        self.stuck = False       # writes are acknowledged but do not take (register writes store 0)
        self.seen: Counter[str] = Counter()


FAULTS = Faults()


def simdata():
    regs = lambda table: [SimData(a, values=list(v), datatype=DataType.REGISTERS) for a, v in table.items()]  # noqa: E731
    return ([SimData(0, values=list(COILS), datatype=DataType.BITS)],
            [SimData(0, values=list(DISCRETE), datatype=DataType.BITS)],
            regs(HOLDING), regs(INPUT))


async def action(function_code, start_address, address, count, registers, set_values):
    if FAULTS.delay:
        await asyncio.sleep(FAULTS.delay)
    if FAULTS.exception:
        return ExcCodes(FAULTS.exception)
    if FAULTS.stuck and set_values and function_code in (6, 16):
        set_values[:] = [0] * len(set_values)
    return None


def trace_pdu(sending: bool, pdu):
    if not sending:
        FAULTS.seen[f"{pdu.function_code}:{pdu.address}:{pdu.count}"] += 1
        FAULTS.seen["requests"] += 1
    return pdu


def trace_packet(sending: bool, data: bytes) -> bytes:
    # "short": a register read answer that lost its last register, but is otherwise well formed (MBAP).
    if sending and FAULTS.short and len(data) > 11 and data[7] in (3, 4) and data[8] >= 4:
        body = bytearray(data[:-2])
        body[8] -= 2
        body[4:6] = (len(body) - 6).to_bytes(2, "big")
        return bytes(body)
    if sending and FAULTS.garbage:
        return data[:2] + b"\x12\x34" + data[4:]
    return data


def trace_packet_rtu(sending: bool, data: bytes) -> bytes:
    if sending and FAULTS.corrupt and data:
        return data[:-1] + bytes([data[-1] ^ 0xFF])
    return data


def command(line: str) -> str | None:
    word, _, arg = line.strip().partition(" ")
    if word == "delay":
        FAULTS.delay = float(arg)
    elif word == "exception":
        FAULTS.exception = int(arg)
    elif word in ("short", "garbage", "corrupt", "stuck"):
        setattr(FAULTS, word, arg.strip() == "on")
    elif word == "reset":
        FAULTS.seen.clear()
    elif word == "stats":
        return "STATS " + json.dumps(dict(FAULTS.seen))
    return "OK " + word


def relay(a: int, b: int) -> None:
    # Joins two pseudo-terminals (like socat): pymodbus's serial server on one, the client on the other.
    import select
    while True:
        r, _, _ = select.select([a, b], [], [])
        for src in r:
            try:
                data = os.read(src, 4096)
            except OSError:
                continue
            os.write(b if src == a else a, data)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--rtu-tcp-port", type=int, default=0)
    ap.add_argument("--serial", action="store_true")
    ap.add_argument("--units", default="1")
    ap.add_argument("--plain", type=int, default=0, help="serve holding 0..N-1 = 0..N-1 instead (benchmarks)")
    args = ap.parse_args()
    units = [int(u) for u in args.units.split(",")]
    data = simdata()
    if args.plain:
        data = [SimData(0, values=list(range(args.plain)), datatype=DataType.REGISTERS)]
    devices = [SimDevice(u, simdata=data, action=None if args.plain else action) for u in units]
    servers = []
    extra = []
    if args.port:
        servers.append(ModbusTcpServer(devices, address=("127.0.0.1", args.port),
                                       trace_pdu=trace_pdu, trace_packet=trace_packet))
    if args.rtu_tcp_port:
        servers.append(ModbusTcpServer(devices, framer=FramerType.RTU, address=("127.0.0.1", args.rtu_tcp_port),
                                       trace_pdu=trace_pdu, trace_packet=trace_packet_rtu))
    if args.serial:
        import tty
        m1, s1 = os.openpty()
        m2, s2 = os.openpty()
        for fd in (s1, s2):
            tty.setraw(fd)
        threading.Thread(target=relay, args=(m1, m2), daemon=True).start()
        # On a serial bus an absent unit is silence, not an error answer (pymodbus's simulator
        # answers "device failure" for unknown units, so that answer is dropped on its way out).
        def silence_absent(sending: bool, data: bytes) -> bytes:
            return b"" if sending and data and data[0] not in units else data

        servers.append(ModbusSerialServer(devices, framer=FramerType.RTU, port=os.ttyname(s1),
                                          baudrate=115200, trace_pdu=trace_pdu, trace_packet=silence_absent))
        extra.append(f"serial={os.ttyname(s2)}")
    for s in servers:
        await s.serve_forever(background=True)
    loop = asyncio.get_running_loop()
    done = asyncio.Event()

    def read_stdin():
        for line in sys.stdin:
            out = loop.call_soon_threadsafe(lambda l=line: print(command(l), flush=True))
            del out
        loop.call_soon_threadsafe(done.set)

    threading.Thread(target=read_stdin, daemon=True).start()
    print("READY " + " ".join(extra), flush=True)
    await done.wait()
    os._exit(0)


if __name__ == "__main__":
    import logging
    logging.disable(logging.WARNING)
    asyncio.run(main())
