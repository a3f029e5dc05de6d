"""Register maps: what a Modbus point is, how its registers decode and encode, how reads are planned.

Pure values and functions, no I/O: `client.py` sends the requests `plan_reads`
produces, `poller.py` decodes the answers with `decode`, writes use `encode`.
"""

from __future__ import annotations

import enum
import functools
import math
import struct
from typing import Any, Callable, Iterable, Sequence

import attrs

from sitegate.structure import Duration


def _choices(cls: type[enum.Enum]) -> str:
    return ", ".join(m.value for m in cls)


class _Choice(enum.Enum):
    """An enum read from a site file; a bad value says what was expected (cattrs adds the path).

    Not a str subclass on purpose: the core converter's strict str hook would win over the enum.
    """

    @classmethod
    def _missing_(cls, value: object):
        if isinstance(value, str):
            for m in cls:
                if m.value == value.strip().lower() or m.name == value.strip().upper():
                    return m
        raise ValueError(f"expected one of {_choices(cls)}, got {value!r}")

    def __str__(self) -> str:
        return self.value


class Table(_Choice):
    """The four Modbus data tables."""

    HOLDING = "holding"
    INPUT = "input"
    COIL = "coil"
    DISCRETE = "discrete"

    @property
    def is_bits(self) -> bool:
        return self in (Table.COIL, Table.DISCRETE)

    @property
    def read_function(self) -> int:
        return _READ_FC[self]

    @property
    def max_read(self) -> int:
        # The protocol limits: 125 registers or 2,000 bits in one read response.
        return 2000 if self.is_bits else 125


_READ_FC = {Table.COIL: 1, Table.DISCRETE: 2, Table.HOLDING: 3, Table.INPUT: 4}


class DataType(_Choice):
    BOOL = "bool"
    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    INT64 = "int64"
    UINT64 = "uint64"
    FLOAT32 = "float32"
    FLOAT64 = "float64"
    STRING = "string"


# struct code and register count per numeric type
_NUMERIC = {
    DataType.INT16: ("h", 1), DataType.UINT16: ("H", 1),
    DataType.INT32: ("i", 2), DataType.UINT32: ("I", 2),
    DataType.INT64: ("q", 4), DataType.UINT64: ("Q", 4),
    DataType.FLOAT32: ("f", 2), DataType.FLOAT64: ("d", 4),
}
_INT_RANGE = {
    DataType.INT16: (-(1 << 15), (1 << 15) - 1), DataType.UINT16: (0, (1 << 16) - 1),
    DataType.INT32: (-(1 << 31), (1 << 31) - 1), DataType.UINT32: (0, (1 << 32) - 1),
    DataType.INT64: (-(1 << 63), (1 << 63) - 1), DataType.UINT64: (0, (1 << 64) - 1),
}


class WordOrder(_Choice):
    """Byte order of a multi-register value, named by where the bytes A (most significant) to D land.

    ABCD: big-endian (the Modbus default). CDAB: words swapped (least significant
    word first), bytes big-endian inside each word. BADC: words in order, bytes
    swapped inside each word. DCBA: fully little-endian. For 64-bit values and
    strings the same two rules (word order, byte order in a word) extend to every word.
    """

    ABCD = "ABCD"
    CDAB = "CDAB"
    BADC = "BADC"
    DCBA = "DCBA"

    @classmethod
    def _missing_(cls, value: object):
        if isinstance(value, str):
            for m in cls:
                if m.value == value.strip().upper():
                    return m
        raise ValueError(f"expected one of {_choices(cls)}, got {value!r}")

    @property
    def swap_words(self) -> bool:
        return self in (WordOrder.CDAB, WordOrder.DCBA)

    @property
    def swap_bytes(self) -> bool:
        return self in (WordOrder.BADC, WordOrder.DCBA)


def _check_address(inst: Any, attribute: attrs.Attribute, value: int) -> None:
    if not 0 <= value <= 0xFFFF:
        raise ValueError(f"{attribute.name}: expected 0..65535, got {value}")


@attrs.frozen(slots=True)
class Point:
    """One named signal in a device's register map.

    `address` is the 0-based protocol address (what goes on the wire; a data
    sheet's "40001" is holding address 0). `bit` picks one bit (0 = least
    significant) of a holding or input register for a bool. `length` is the
    number of registers of a string. The value a user sees is
    ``raw * scale + offset``; writes do the reverse.
    """

    name: str
    address: int = attrs.field(validator=_check_address)
    table: Table = Table.HOLDING
    type: DataType = DataType.UINT16
    order: WordOrder = WordOrder.ABCD
    bit: int | None = None
    length: int = 0
    scale: float = 1.0
    offset: float = 0.0
    unit: str = ""
    writable: bool = False
    poll: Duration | None = None
    description: str = ""

    def __attrs_post_init__(self) -> None:
        where = f"point {self.name!r}"
        if not self.name:
            raise ValueError("name: a point needs a non-empty name")
        if self.table.is_bits:
            if self.type is not DataType.BOOL:
                raise ValueError(f"{where}: type: a {self.table} point is a bool, got {self.type}")
            if self.bit is not None:
                raise ValueError(f"{where}: bit: only for bools in holding or input registers")
            if self.writable and self.table is Table.DISCRETE:
                raise ValueError(f"{where}: writable: discrete inputs are read-only")
        else:
            if self.type is DataType.BOOL and self.bit is None:
                raise ValueError(f"{where}: bit: a bool in a {self.table} register needs bit: 0..15")
            if self.bit is not None and (self.type is not DataType.BOOL or not 0 <= self.bit <= 15):
                raise ValueError(f"{where}: bit: expected 0..15 on a bool point, got {self.bit} on {self.type}")
            if self.writable and self.table is Table.INPUT:
                raise ValueError(f"{where}: writable: input registers are read-only")
        if self.type is DataType.STRING:
            if not 1 <= self.length <= 125:
                raise ValueError(f"{where}: length: a string needs its length in registers (1..125), got {self.length}")
        elif self.length:
            raise ValueError(f"{where}: length: only strings have a length")
        if self.scale == 0 or not math.isfinite(self.scale):
            raise ValueError(f"{where}: scale: expected a finite non-zero number, got {self.scale}")
        if self.address + self.width - 1 > 0xFFFF:
            raise ValueError(f"{where}: address: {self.address} + {self.width} runs past 65535")
        if self.poll is not None and float(self.poll) <= 0:
            raise ValueError(f"{where}: poll: expected a positive interval")

    @property
    def width(self) -> int:
        """How many registers (or bits, for coils and discrete inputs) the point occupies."""
        if self.table.is_bits or self.type is DataType.BOOL:
            return 1
        if self.type is DataType.STRING:
            return self.length
        return _NUMERIC[self.type][1]

    @property
    def datatype(self) -> str:
        """The sitegate PointInfo datatype: float, int, bool or str."""
        if self.type is DataType.BOOL:
            return "bool"
        if self.type is DataType.STRING:
            return "str"
        if self.type in (DataType.FLOAT32, DataType.FLOAT64) or self.scale != 1 or self.offset != 0:
            return "float"
        return "int"


@attrs.frozen(slots=True)
class Gap:
    """Addresses `start`..`end` (inclusive) of a table that the device refuses to read.

    The planner never bridges a gap like this to merge two reads.
    """

    table: Table
    start: int = attrs.field(validator=_check_address)
    end: int = attrs.field(validator=_check_address)

    def __attrs_post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError(f"gap: end {self.end} is before start {self.start}")


# --- decoding and encoding --------------------------------------------------------

def _words_to_bytes(words: Sequence[int], order: WordOrder) -> bytes:
    if order.swap_words:
        words = words[::-1]
    return struct.pack(("<" if order.swap_bytes else ">") + "H" * len(words), *words)


def _bytes_to_words(data: bytes, order: WordOrder) -> list[int]:
    words = list(struct.unpack(("<" if order.swap_bytes else ">") + "H" * (len(data) // 2), data))
    return words[::-1] if order.swap_words else words


def decode_raw(point: Point, words: Sequence[Any]) -> Any:
    """The raw value of `point` from its own registers (or its one bit), before scale and offset."""
    if point.table.is_bits:
        return bool(words[0])
    if point.type is DataType.BOOL:
        return bool((words[0] >> point.bit) & 1)
    if len(words) != point.width:
        raise ValueError(f"point {point.name!r}: expected {point.width} registers, got {len(words)}")
    data = _words_to_bytes(words, point.order)
    if point.type is DataType.STRING:
        return data.split(b"\x00", 1)[0].decode("latin-1").rstrip(" ")
    return struct.unpack(">" + _NUMERIC[point.type][0], data)[0]


def decode(point: Point, words: Sequence[Any]) -> Any:
    """The value of `point` as a user sees it: raw * scale + offset (ints stay ints when unscaled)."""
    if len(words) != point.width:
        raise ValueError(f"point {point.name!r}: expected {point.width} registers, got {len(words)}")
    return decoder(point)(words, 0)


@functools.lru_cache(maxsize=65536)
def decoder(point: Point) -> Callable[[Sequence[Any], int], Any]:
    """A function ``(words, offset) -> value`` for `point`, with its formats compiled once.

    The poller calls it on a whole read's registers at each point's offset: no
    slicing into a list per point, no format strings built per reading (5x
    cheaper than `decode_raw` per point).
    """
    if point.table.is_bits:
        return lambda w, o: bool(w[o])
    if point.type is DataType.BOOL:
        mask = 1 << point.bit
        return lambda w, o: bool(w[o] & mask)
    n = point.width
    if point.type is DataType.STRING:
        return lambda w, o: decode_raw(point, w[o:o + n])
    code = _NUMERIC[point.type][0]
    if n == 1 and not point.order.swap_bytes:
        raw = (lambda w, o: w[o]) if code == "H" else (lambda w, o: ((w[o] & 0xFFFF) ^ 0x8000) - 0x8000)
    else:
        pack = struct.Struct(("<" if point.order.swap_bytes else ">") + "H" * n).pack
        unpack = struct.Struct(">" + code).unpack
        if point.order.swap_words:
            raw = lambda w, o: unpack(pack(*w[o:o + n][::-1]))[0]  # noqa: E731
        else:
            raw = lambda w, o: unpack(pack(*w[o:o + n]))[0]  # noqa: E731
    scale, offset = point.scale, point.offset
    if scale == 1.0 and offset == 0.0:
        return raw
    return lambda w, o: raw(w, o) * scale + offset


def encode(point: Point, value: Any) -> list[int] | list[bool]:
    """The registers (or the one bit) to write so that `point` reads `value`.

    A bool in a register bit is not encoded here: see `set_bit` (it needs the
    register's current value). Raises ValueError saying why a value does not fit.
    """
    where = f"point {point.name!r}"
    if point.table.is_bits:
        return [_as_bool(value, where)]
    if point.type is DataType.BOOL:
        raise ValueError(f"{where}: a register bit is written with set_bit (read, modify, write)")
    if point.type is DataType.STRING:
        if not isinstance(value, str):
            raise ValueError(f"{where}: expected a string, got {type(value).__name__} {value!r}")
        data = value.encode("latin-1", errors="strict") if value.isascii() else None
        if data is None:
            raise ValueError(f"{where}: only ASCII strings can be written, got {value!r}")
        if len(data) > 2 * point.length:
            raise ValueError(f"{where}: {len(data)} characters do not fit in {point.length} registers")
        return _bytes_to_words(data.ljust(2 * point.length, b"\x00"), point.order)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{where}: expected a number, got {type(value).__name__} {value!r}")
    raw: float | int = value
    if point.scale != 1.0 or point.offset != 0.0:
        raw = (value - point.offset) / point.scale
    code = _NUMERIC[point.type][0]
    if point.type in _INT_RANGE:
        if not math.isfinite(raw):
            raise ValueError(f"{where}: {value!r} is not a finite number")
        raw = round(raw)
        lo, hi = _INT_RANGE[point.type]
        if not lo <= raw <= hi:
            raise ValueError(f"{where}: {value!r} is out of range for {point.type} "
                             f"(raw {raw}, allowed {lo}..{hi})")
    elif point.type is DataType.FLOAT32 and math.isfinite(raw) and abs(raw) > 3.4028234663852886e38:
        raise ValueError(f"{where}: {value!r} is out of range for float32")
    return _bytes_to_words(struct.pack(">" + code, raw), point.order)


def _as_bool(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    raise ValueError(f"{where}: expected true or false, got {value!r}")


def set_bit(point: Point, register: int, value: Any) -> int:
    """`register` with `point`'s bit set to `value` (the other 15 bits kept)."""
    on = _as_bool(value, f"point {point.name!r}")
    mask = 1 << point.bit
    return (register | mask) if on else (register & ~mask & 0xFFFF)


# --- planning reads ---------------------------------------------------------------

@attrs.frozen(slots=True)
class ReadRequest:
    """One read the poller sends: `count` registers or bits of `table` from `address`,
    and where each point's value sits in the answer (offset from `address`)."""

    table: Table
    address: int
    count: int
    points: tuple[tuple[Point, int], ...]


def _refused(gaps: Sequence[Gap], table: Table, first: int, last: int) -> bool:
    return any(g.table is table and g.start <= last and first <= g.end for g in gaps)


def plan_reads(points: Iterable[Point], *, max_gap: int = 16, max_registers: int = 125,
               max_bits: int = 2000, gaps: Sequence[Gap] = ()) -> list[ReadRequest]:
    """The fewest reads that cover `points`.

    Points of one table are merged into one read when the addresses between
    them number at most `max_gap` registers (16 x `max_gap` bits for coils and
    discrete inputs), the read stays within `max_registers` / `max_bits`
    (capped at the protocol's 125 / 2,000), and none of the addresses read
    only to fill the hole lie in a declared gap. Raises ValueError for a point
    that itself lies in a gap or is wider than one read.
    """
    by_table: dict[Table, list[Point]] = {}
    for p in points:
        by_table.setdefault(p.table, []).append(p)
    out: list[ReadRequest] = []
    for table in Table:
        members = sorted(by_table.get(table, ()), key=lambda p: (p.address, p.width))
        if not members:
            continue
        limit = min(table.max_read, max_bits if table.is_bits else max_registers)
        bridge = max_gap * 16 if table.is_bits else max_gap
        start = end = -1
        current: list[Point] = []
        for p in members:
            first, last = p.address, p.address + p.width - 1
            if p.width > limit:
                raise ValueError(f"point {p.name!r}: {p.width} registers do not fit in one read (at most {limit})")
            if _refused(gaps, table, first, last):
                raise ValueError(f"point {p.name!r}: {table} {first}..{last} lies in a gap the device refuses")
            if current and (first - end - 1 <= bridge and max(end, last) - start + 1 <= limit
                            and (first <= end + 1 or not _refused(gaps, table, end + 1, first - 1))):
                current.append(p)
                end = max(end, last)
                continue
            if current:
                out.append(_request(table, start, end, current))
            current, start, end = [p], first, last
        out.append(_request(table, start, end, current))
    return out


def _request(table: Table, start: int, end: int, members: list[Point]) -> ReadRequest:
    return ReadRequest(table, start, end - start + 1, tuple((p, p.address - start) for p in members))


def group_by_interval(points: Iterable[Point], default: float) -> dict[float, list[Point]]:
    """Points keyed by their poll interval in seconds (the device's `default` when a point sets none)."""
    groups: dict[float, list[Point]] = {}
    for p in points:
        groups.setdefault(float(p.poll) if p.poll is not None else float(default), []).append(p)
    return dict(sorted(groups.items()))
