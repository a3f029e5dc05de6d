"""The configuration of a Modbus entry: one link (a TCP host or a serial line) and the devices behind it.

cattrs structures the site file's ``config:`` into `ModbusConfig`; the register
maps inside are `registermap.Point`s. `__init__.py` hands it to `poller.py`.
"""

from __future__ import annotations

from typing import ClassVar

import attrs

from sitegate.structure import Duration

from .registermap import Gap, Point, plan_reads
from .transport import Endpoint, Link


@attrs.frozen
class DeviceConfig:
    """One Modbus unit behind the entry's link, with its register map."""

    name: str = ""                   # site-wide device id is "<entry>.<name>" ("<entry>" when empty)
    unit: int = 1                    # unit id (slave address) 0..255
    poll: Duration = Duration(1.0)   # default interval of its points
    points: list[Point] = attrs.Factory(list)
    gaps: list[Gap] = attrs.Factory(list)    # address ranges the device refuses: never read across them
    max_gap: int = 16                # unused registers a merged read may include to save a request
    max_registers: int = 125         # per read (some devices accept fewer)
    max_bits: int = 2000             # per read of coils or discrete inputs
    write_multiple: bool = False     # write one register with function 16 too (devices without 6)
    manufacturer: str = ""
    model: str = ""

    def __attrs_post_init__(self) -> None:
        where = f"device {self.name!r}: " if self.name else ""
        if not 0 <= self.unit <= 255:
            raise ValueError(f"{where}unit: expected 0..255, got {self.unit}")
        if float(self.poll) <= 0:
            raise ValueError(f"{where}poll: expected a positive interval")
        if not self.points:
            raise ValueError(f"{where}points: a device needs at least one point")
        names = [p.name for p in self.points]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"{where}points: duplicate point names {dupes}")
        if not 1 <= self.max_registers <= 125:
            raise ValueError(f"{where}max_registers: expected 1..125, got {self.max_registers}")
        if not 1 <= self.max_bits <= 2000:
            raise ValueError(f"{where}max_bits: expected 1..2000, got {self.max_bits}")
        if self.max_gap < 0:
            raise ValueError(f"{where}max_gap: expected 0 or more, got {self.max_gap}")
        try:
            plan_reads(self.points, max_gap=self.max_gap, max_registers=self.max_registers,
                       max_bits=self.max_bits, gaps=self.gaps)
        except ValueError as exc:
            raise ValueError(f"{where}{exc}") from None


@attrs.frozen
class ModbusConfig:
    """Settings of one Modbus entry.

    Either `devices:` (several unit ids on one link) or, for the common single
    device, `unit`/`poll`/`points` directly in the entry.
    """

    config_version: ClassVar[int] = 1

    link: Link = Link.TCP
    host: str = ""
    port: int = 502
    serial: str = ""
    baudrate: int = 19200
    bytesize: int = 8
    parity: str = "N"
    stopbits: int = 1
    local_echo: bool = False                   # RS-485 converter that echoes what it sends
    timeout: Duration = Duration(1.0)          # per request
    connect_timeout: Duration = Duration(3.0)
    offline_after: int = 3                     # consecutive unanswered polls before a device is offline
    reconnect_min: Duration = Duration(0.5)    # backoff between reconnects and offline probes: min ...
    reconnect_max: Duration = Duration(30.0)   # ... doubling up to max
    # single-device shorthand
    unit: int = 1
    poll: Duration = Duration(1.0)
    points: list[Point] = attrs.Factory(list)
    gaps: list[Gap] = attrs.Factory(list)
    max_gap: int = 16
    max_registers: int = 125
    max_bits: int = 2000
    write_multiple: bool = False
    devices: list[DeviceConfig] = attrs.Factory(list)

    def __attrs_post_init__(self) -> None:
        self.endpoint()            # validates host/port/serial
        if float(self.timeout) <= 0:
            raise ValueError("timeout: expected a positive duration")
        if self.offline_after < 1:
            raise ValueError(f"offline_after: expected 1 or more, got {self.offline_after}")
        if not 0 < float(self.reconnect_min) <= float(self.reconnect_max):
            raise ValueError("reconnect_min, reconnect_max: expected 0 < min <= max")
        if self.devices and self.points:
            raise ValueError("points: give points inside each of devices, or at the top level for one device, not both")
        if not self.devices and not self.points:
            raise ValueError("points: the entry has no points (give points, or devices with points)")
        names = [d.name for d in self.devices]
        if len(self.devices) > 1 and (len(set(names)) != len(names) or "" in names):
            raise ValueError(f"devices: each device needs its own non-empty name, got {names}")
        if not self.devices:
            self.device_configs()  # validates the shorthand device

    def endpoint(self) -> Endpoint:
        return Endpoint(self.link, self.host, self.port, self.serial, self.baudrate, self.bytesize,
                        self.parity, self.stopbits, self.local_echo)

    def device_configs(self) -> list[DeviceConfig]:
        if self.devices:
            return list(self.devices)
        return [DeviceConfig("", self.unit, self.poll, self.points, self.gaps, self.max_gap, self.max_registers,
                             self.max_bits, self.write_multiple)]
