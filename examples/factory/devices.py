"""The factory line's simulated field devices, in one process: a press PLC and an energy meter
(pymodbus TCP servers with moving values) and MQTT-SN sensor nodes (QoS -1 publishes over UDP).

    python examples/factory/devices.py --plc-port P --meter-port M --mqttsn-port S [--nodes 4]

Prints "READY" once the Modbus servers listen; exits when stdin closes (its parent went away).
Register maps are in PLC and METER below; site.yaml reads exactly these addresses.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import socket
import struct
import sys
import threading
import time

from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

# Holding registers, big-endian words (ABCD); values are computed from the clock at each read.
PLC = {"oil_temp": 0, "pressure": 2, "cycles": 4, "running": 6}          # float32, float32, uint32, uint16
METER = {"power_kw": 0, "energy_kwh": 2, "voltage": 4}                   # float32, uint32, float32
START = time.time()


def f32(value: float) -> list[int]:
    hi, lo = struct.unpack(">HH", struct.pack(">f", value))
    return [hi, lo]


def u32(value: int) -> list[int]:
    return [(value >> 16) & 0xFFFF, value & 0xFFFF]


def plc_registers(t: float) -> dict[int, list[int]]:
    """Slow sine oil temperature, wobbling pressure, two press cycles a second."""
    return {PLC["oil_temp"]: f32(55 + 8 * math.sin(t / 30)), PLC["pressure"]: f32(6.2 + 0.4 * math.sin(t * 2.3)),
            PLC["cycles"]: u32(int(t * 2)), PLC["running"]: [1]}


def meter_registers(t: float) -> dict[int, list[int]]:
    """Power around 40 kW; energy is its integral (kWh, counting up); 400 V mains."""
    power = 40 + 15 * math.sin(t / 20) + 3 * math.sin(t * 1.7)
    energy = 1000 + (40 * t + 300 * (1 - math.cos(t / 20))) / 3600
    return {METER["power_kw"]: f32(power), METER["energy_kwh"]: u32(int(energy)), METER["voltage"]: f32(400 + 2 * math.sin(t / 7))}


def device(registers_at) -> SimDevice:
    async def refresh(function_code, start_address, address, count, registers, set_values):
        # Called on every request: write the current values into the register block first.
        for addr, words in registers_at(time.time() - START).items():
            registers[addr - start_address:addr - start_address + len(words)] = words
        return None
    return SimDevice(1, simdata=[SimData(0, values=[0] * 16, datatype=DataType.REGISTERS)], action=refresh)


def mqttsn_publish(topic_id: int, payload: bytes) -> bytes:
    """An MQTT-SN PUBLISH at QoS -1 to a predefined topic id (flags 0x61): no connection needed."""
    body = struct.pack(">BBHH", 0x0C, 0x61, topic_id, 0) + payload
    return bytes([len(body) + 1]) + body


async def sensor_nodes(port: int, nodes: int) -> None:
    """Hall temperature nodes n1..nN on predefined topic ids 1..N ("hall/nK/temp"), every second."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    start = time.time()
    while True:
        t = time.time() - start
        for k in range(1, nodes + 1):
            value = 24 + 3 * math.sin(t / 15 + k) + (14 if k == nodes and int(t) % 60 >= 50 else 0)  # one gets hot
            sock.sendto(mqttsn_publish(k, f"{value:.2f}".encode()), ("127.0.0.1", port))
        await asyncio.sleep(1.0)


def exit_when_stdin_closes() -> None:
    sys.stdin.read()
    import os
    os._exit(0)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--plc-port", type=int, required=True)
    ap.add_argument("--meter-port", type=int, required=True)
    ap.add_argument("--mqttsn-port", type=int, required=True)
    ap.add_argument("--nodes", type=int, default=4)
    args = ap.parse_args()
    servers = [ModbusTcpServer([device(plc_registers)], address=("127.0.0.1", args.plc_port)),
               ModbusTcpServer([device(meter_registers)], address=("127.0.0.1", args.meter_port))]
    for server in servers:
        await server.serve_forever(background=True)
    threading.Thread(target=exit_when_stdin_closes, daemon=True).start()
    print("READY", flush=True)
    await sensor_nodes(args.mqttsn_port, args.nodes)


if __name__ == "__main__":
    import logging
    logging.disable(logging.WARNING)     # pymodbus logs every client that goes away
    asyncio.run(main())
